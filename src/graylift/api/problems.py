"""Errors as RFC 9457 problem+json, in one place: the message is the one the CLI prints, never a traceback.

    ====================================================  ======
    error                                                  status
    ====================================================  ======
    Unauthenticated (no or bad token, no session)          401
    Denied (the role does not allow it)                    403
    ReleaseNotFound, Missing (user, token, request, ...)   404
    ReleaseConflict, StateError, LeaseLost, AccountError    409
    Frozen (a freeze window)                               423
    InputError, UsageError, ConfigError, PlanError,        422
    PreflightFailed,
    ArtifactError, a body or parameter that does not
    validate
    TransportError, TrafficError, SilencerError,           502
    HealthCheckFailed, InventoryError (a host or backend)
    StoreError (the state database)                        503
    anything else                                          500 ("internal error", with an id in the log)
    ====================================================  ======

``error`` names the exception class (the CLI's ``--server`` client raises the same one again) and
``problems`` lists a preflight's problems.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from graylift import errors
from graylift.auth.base import Frozen, InputError
from graylift.auth.roles import Denied, Unauthenticated
from graylift.redact import mask_url
from graylift.store.accounts import AccountError, Missing

log = logging.getLogger("graylift.api")
MEDIA = "application/problem+json"

STATUS: list[tuple[type[Exception], int, str]] = [
    (Unauthenticated, 401, "Not authenticated"),
    (Denied, 403, "Not allowed"),
    (errors.ReleaseNotFound, 404, "Not found"),
    (Missing, 404, "Not found"),
    (Frozen, 423, "Frozen"),
    (errors.ReleaseConflict, 409, "Conflict"),
    (errors.StateError, 409, "Conflict"),
    (AccountError, 409, "Conflict"),
    (InputError, 422, "Invalid input"),
    (errors.UsageError, 422, "Invalid input"),
    (errors.ConfigError, 422, "Invalid input"),
    (errors.PlanError, 422, "Refused by the plan or the preflight"),
    (errors.ArtifactError, 422, "Artifact problem"),
    (errors.TransportError, 502, "A host failed"),
    (errors.TrafficError, 502, "A backend failed"),
    (errors.SilencerError, 502, "A backend failed"),
    (errors.HealthCheckFailed, 502, "A health check failed"),
    (errors.InventoryError, 502, "The inventory failed"),
    (errors.StoreError, 503, "The state database failed"),
    (errors.GrayliftError, 400, "Refused"),
]


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(status: int, title: str, detail: str, *, error: str, instance: str = "",
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:graylift:problem:{_slug(error)}", "title": title, "status": status,
            "detail": mask_url(detail), "instance": instance, "error": error, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


def for_error(exc: errors.GrayliftError, instance: str = "") -> JSONResponse:
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, errors.PreflightFailed):
                extra["problems"] = [mask_url(p) for p in exc.problems]
            headers = {"WWW-Authenticate": 'Bearer realm="graylift"'} if status == 401 else None
            return problem(status, title, str(exc), error=type(exc).__name__, instance=instance, headers=headers,
                           **extra)
    raise AssertionError("GrayliftError is in the table")  # pragma: no cover


async def graylift_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.GrayliftError)
    return for_error(exc, request.url.path)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    lines = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        lines.append(f"{where}: {e.get('msg', 'invalid')}")
    return problem(422, "Invalid input", "; ".join(lines) or "the request is not valid", error="InputError",
                   instance=request.url.path)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else "the request was not understood"
    return problem(exc.status_code, {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Refused"),
                   detail, error="HTTPError", instance=request.url.path, headers=headers or None)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    ref = secrets.token_hex(4)
    log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", f"internal error {ref}; the server's log has the details",
                   error="InternalError", instance=request.url.path)
