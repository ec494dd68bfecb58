"""One JSON-over-HTTP call for the registry and monitoring adapters, with errors translated once.

Every failure becomes ``error_type(f"{name}: {METHOD} {path} ...; {hint}")``: it names the server and
says what to check. Request bodies and headers are never put in messages (they may hold secrets).
"""

from __future__ import annotations

from typing import Any

import httpx

from graylift.errors import GrayliftError


async def call(error_type: type[GrayliftError], name: str, method: str, url: str, *, hint: str,
               timeout: float, expect_json: bool = True, ok_statuses: tuple[int, ...] = (),
               **kwargs: Any) -> tuple[int, Any]:
    """Send one request; return (status, parsed JSON or text). Raises ``error_type`` on any failure.

    ``ok_statuses`` are non-2xx statuses the caller handles itself (e.g. 404 = not registered).
    """
    path = httpx.URL(url).path
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise error_type(f"{name}: {method} {path} failed: {type(exc).__name__} {exc}".rstrip()
                         + f"; {hint}") from exc
    status = response.status_code
    if status in ok_statuses:
        return status, response.text
    if status in (401, 403):
        raise error_type(f"{name}: {method} {path} was refused with HTTP {status} "
                         f"({response.text.strip()[:200]}); check the credentials/token and their permissions")
    if status >= 300:
        raise error_type(f"{name}: {method} {path} returned HTTP {status}: {response.text.strip()[:300]}; {hint}")
    if not expect_json:
        return status, response.text
    if not response.content:
        return status, None
    try:
        return status, response.json()
    except ValueError as exc:
        raise error_type(f"{name}: {method} {path} returned non-JSON: {response.text[:200]!r}; {hint}") from exc
