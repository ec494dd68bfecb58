"""Who is asking: an API token (``Authorization: Bearer glt_...``) or a console session cookie (with its CSRF
token on every unsafe method). Every route depends on :func:`actor`; nothing is served without it but the
login page, static files and ``/healthz``. A stream asks again (:func:`reauth`); :func:`desk_of` is the desk
every route asks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from graylift.auth import ANY, Actor, Desk, Grant, Role, Unauthenticated
from graylift.auth.secrets import same

SESSION_COOKIE = "graylift_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    auth: bool = True
    cookie_secure: bool = False
    workers: bool = True
    take_over: bool = True
    max_releases: int = 8
    pool_interval: float = 1.0
    notify: bool = True
    notify_interval: float = 0.5
    webhook_backoff: float = 2.0
    webhook_max_attempts: int = 8
    stream_poll: float = 0.5
    stream_heartbeat: float = 15.0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.public_url.rstrip("/") or f"http://{host}:{self.port}"


class CsrfFailed(Unauthenticated):
    """A console form or request without the session's CSRF token."""


def source_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def desk_of(request: Request) -> Desk:
    return request.app.state.desk  # type: ignore[no-any-return]


async def actor(request: Request) -> Actor:
    desk = desk_of(request)
    settings: ServerSettings = request.app.state.settings
    source = source_of(request)
    if not settings.auth:
        return Actor("local", (Grant(ANY, ANY, Role.ADMIN),), "no-auth", source,
                     "console" if request.cookies.get(SESSION_COOKIE) else "api")
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send the API token as `Authorization: Bearer glt_...`")
        trigger = request.headers.get("x-graylift-trigger", "api").lower()
        return await run_in_threadpool(desk.authenticate_token, token.strip(), source=source, trigger=trigger)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        who, csrf = await run_in_threadpool(desk.authenticate_session, cookie, source=source)
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not given and request.headers.get("content-type", "").startswith(FORM_TYPES):
                given = str((await request.form()).get("csrf_token", ""))
            if not given or not same(given, csrf):
                raise CsrfFailed("the form is missing its CSRF token or it does not match the session; reload "
                                 "the page and try again")
        request.state.csrf = csrf
        return who
    raise Unauthenticated("no credentials: send `Authorization: Bearer <token>` (`graylift tokens create`) "
                          "or log in to the console")


ActorDep = Annotated[Actor, Depends(actor)]


def reauth(request: Request, actor: Actor) -> Actor:
    """The actor again, from the same credentials (a revoked token or ended session stops a stream)."""
    desk = desk_of(request)
    if actor.via.startswith("token:"):
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        return desk.authenticate_token(token, source=actor.source, trigger=actor.trigger)
    if actor.via == "session":
        return desk.authenticate_session(request.cookies.get(SESSION_COOKIE, ""), source=actor.source)[0]
    return actor
