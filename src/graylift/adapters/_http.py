"""One JSON-over-HTTP call for the registry and monitoring adapters, with errors translated once.

Every failure becomes ``error_type(f"{name}: {METHOD} {path} ...; {hint}")``: it names the server and
says what to check. Request bodies and headers are never put in messages (they may hold secrets), a
URL is shown without its userinfo (``safe_url``), and every message passes through ``scrub``, which
masks the secrets the caller names (passwords, tokens) even when a server echoes them back.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import httpx

from graylift.errors import GrayliftError

MASK = "***"
MIN_SECRET = 4  # shorter "secrets" (a test token "t") would mask letters all over a message


def safe_url(url: str) -> str:
    """``url`` fit for a message: no ``user:password@`` and no query string (either may hold a secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed.copy_with(query=None, fragment=None))


def basic_auth(username: str, password: str) -> str:
    """The credentials as HTTP basic auth sends them (base64): a secret too, should a server echo it."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of a URL, its raw userinfo and their basic-auth form: what ``scrub`` must mask for it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return (url,)
    raw = parsed.userinfo.decode(errors="replace")
    if not parsed.password:
        return (raw,) if raw else ()  # a bare token as the user name
    return parsed.password, raw, raw.partition(":")[2], basic_auth(parsed.username, parsed.password)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of at least MIN_SECRET characters) replaced by ``***``, longest first."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _path(url: str) -> str:
    try:
        return httpx.URL(url).path
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"


async def call(error_type: type[GrayliftError], name: str, method: str, url: str, *, hint: str,
               timeout: float, expect_json: bool = True, ok_statuses: tuple[int, ...] = (),
               secrets: Iterable[str | None] = (), **kwargs: Any) -> tuple[int, Any]:
    """Send one request; return (status, parsed JSON or text). Raises ``error_type`` on any failure.

    ``ok_statuses`` are non-2xx statuses the caller handles itself (e.g. 404 = not registered).
    ``secrets`` are masked in every message (the URL's own password always is).
    """
    hidden = (*secrets, *url_secrets(url))

    def fail(message: str) -> GrayliftError:
        return error_type(scrub(message, hidden))

    path = _path(url)
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"{name}: {method} {path} failed: {type(exc).__name__} {exc}".rstrip() + f"; {hint}") from None
    except httpx.InvalidURL:
        raise fail(f"{name}: {safe_url(url)} is not a valid URL; fix it in the config") from None
    status = response.status_code
    if status in ok_statuses:
        return status, response.text
    if status in (401, 403):
        raise fail(f"{name}: {method} {path} was refused with HTTP {status} "
                   f"({response.text.strip()[:200]}); check the credentials/token and their permissions")
    if status >= 300:
        raise fail(f"{name}: {method} {path} returned HTTP {status}: {response.text.strip()[:300]}; {hint}")
    if not expect_json:
        return status, response.text
    if not response.content:
        return status, None
    try:
        return status, response.json()
    except ValueError:
        raise fail(f"{name}: {method} {path} returned non-JSON: {response.text[:200]!r}; {hint}") from None
