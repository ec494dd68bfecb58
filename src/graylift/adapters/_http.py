"""HTTP for every HTTP backend, with httpx's errors translated once.

Alertmanager, Zabbix, nginx Plus, etcd, Nacos, Consul, Eureka, the artifact repository, the HTTP inventory
and NetBox all send their requests through :func:`call` (or, to read statuses themselves, inside
:func:`translated`). Every failure becomes the backend's own error type, one line that names the backend
and says what to check::

    <error_type>(GrayliftError)
      "<name>: <METHOD> <path> failed: ConnectError ...; <hint>"              the server cannot be reached
      "<name>: <url> is not a valid URL; fix it in the config"
      "<name>: <METHOD> <path> was refused with HTTP 401 (<detail>); <auth_hint>"
      "<name>: <METHOD> <path> returned HTTP 502: <detail>; <status hint or hint>"
      "<name>: <METHOD> <path> returned non-JSON: '<text>'; <hint>"

Request bodies and headers are never put in messages (they may hold secrets), a URL is shown without its
userinfo and query (``safe_url``; ``show_query`` for a query graylift built itself), and every message
passes through ``scrub``, which masks the secrets the caller names (passwords, tokens) even when a server
echoes them back.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from graylift.adapters._limits import LoopSemaphores
from graylift.core.template import render
from graylift.deadline import bounded, whole_request
from graylift.errors import GrayliftError

T = TypeVar("T")

MASK = "***"
MIN_SECRET = 4  # shorter "secrets" (a test token "t") would mask letters all over a message
AUTH_HINT = "check the credentials/token and their permissions"


def safe_url(url: str | httpx.URL) -> str:
    """``url`` fit for a message: no ``user:password@`` and no query string (either may hold a secret)."""
    try:
        parsed = httpx.URL(str(url))
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


def shown(url: str, *, show_query: bool = False) -> str:
    """The part of ``url`` a message names: its path (and query, when graylift built it and it holds no secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    query = parsed.query.decode(errors="replace") if show_query else ""
    return parsed.path + (f"?{query}" if query else "")


def detail(response: httpx.Response, limit: int = 300) -> str:
    """What a refusal says, on one line: the message of a JSON error body (``{"error": {"code", "text"}}``,
    ``{"error": "..."}``, ``{"detail": ...}``, ``{"message": ...}``), else the body's text."""
    text = " ".join(response.text.split())
    try:
        body = json.loads(response.text)
    except ValueError:
        return text[:limit] or "(empty body)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, words = error.get("code", ""), error.get("text") or error.get("message") or ""
        text = f"{code}: {words}".strip(": ") or text
    elif isinstance(body, dict):
        said = next((body[key] for key in ("message", "detail", "error") if isinstance(body.get(key), str | list)),
                    None)
        text = " ".join(str(said).split()) if said else text
    return text[:limit]


@contextlib.contextmanager
def translated(error_type: type[GrayliftError], name: str, method: str, url: str, *, hint: str,
               secrets: Iterable[str | None] = (), show_query: bool = False,
               timeout: float | None = None) -> Iterator[None]:
    """httpx's exceptions raised inside become one ``error_type`` naming the request, and so does the
    TimeoutError of :func:`graylift.deadline.bounded` when ``timeout`` (its seconds) is given; nothing else is
    caught."""
    def error(why: str) -> GrayliftError:
        message = f"{name}: {method} {shown(url, show_query=show_query)} failed: {why}"
        return error_type(scrub(message.rstrip() + f"; {hint}", (*secrets, *url_secrets(url))))

    try:
        yield
    except httpx.InvalidURL:
        raise error_type(scrub(f"{name}: {safe_url(url)} is not a valid URL; fix it in the config",
                               (*secrets, *url_secrets(url)))) from None
    except httpx.HTTPError as exc:
        raise error(f"{type(exc).__name__} {exc}") from None
    except TimeoutError:
        if timeout is None:
            raise
        raise error(f"no complete answer in {whole_request(timeout):g}s") from None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context (httpx's default: certifi's CA bundle, hostnames checked) made once per process.

    httpx builds a new one for every client, and loading the CA bundle costs about 80 ms of CPU: with a client
    per request that was most of the controller's CPU per host (four Alertmanager calls per host).
    """
    return httpx.create_ssl_context(trust_env=False)


def new_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client over :func:`tls_context`, environment proxies ignored (a backend is named in the config)."""
    return httpx.AsyncClient(verify=tls_context(), trust_env=False, **kwargs)


async def call(error_type: type[GrayliftError], name: str, method: str, url: str, *, hint: str,
               timeout: float, expect_json: bool = True, ok_statuses: tuple[int, ...] = (),
               secrets: Iterable[str | None] = (), client: httpx.AsyncClient | None = None,
               auth_hint: str = AUTH_HINT, status_hints: Mapping[int, str] | None = None,
               show_query: bool = False, **kwargs: Any) -> tuple[int, Any]:
    """Send one request; return (status, parsed JSON or text). Raises ``error_type`` on any failure.

    ``ok_statuses`` are non-2xx statuses the caller handles itself (e.g. 404 = not registered); their
    answer is the body's text. ``client`` is a client the caller keeps (its headers, auth, TLS settings);
    without one, a client is made for this request. ``status_hints`` replace ``hint`` for some statuses.
    ``secrets`` are masked in every message (the URL's own password always is).
    """
    hidden = (*secrets, *url_secrets(url))
    where = f"{name}: {method} {shown(url, show_query=show_query)}"
    with translated(error_type, name, method, url, hint=hint, secrets=secrets, show_query=show_query,
                    timeout=timeout):
        if client is not None:
            response = await bounded(client.request(method, url, **kwargs), timeout)
        else:
            async with new_client(timeout=timeout) as own:
                response = await bounded(own.request(method, url, **kwargs), timeout)
    status = response.status_code
    if status in ok_statuses:
        return status, response.text
    if status in (401, 403):
        raise error_type(scrub(f"{where} was refused with HTTP {status} ({detail(response, 200)}); {auth_hint}",
                               hidden))
    if status >= 300:
        raise error_type(scrub(f"{where} returned HTTP {status}: {detail(response)}; "
                               f"{(status_hints or {}).get(status, hint)}", hidden))
    if not expect_json:
        return status, response.text
    if not response.content:
        return status, None
    try:
        return status, response.json()
    except ValueError:
        raise error_type(scrub(f"{where} returned non-JSON: {response.text[:200]!r}; {hint}", hidden)) from None


class Api:
    """One backend's HTTP server: requests to ``url`` + a path through :func:`call`, with the backend's error
    type, name, timeout, hint and secrets (its own, its login's, its URL's) filled in.

    ``where`` is the URL fit for a message. With a :class:`Login`, :meth:`call_logged_in` sends the login's
    token (as the backend wants it: ``with_token``) and renews it once when the server refuses it.
    """

    def __init__(self, error_type: type[GrayliftError], name: str, url: str, *, timeout: float, hint: str,
                 secrets: Iterable[str | None] = (), client: httpx.AsyncClient | None = None) -> None:
        self.error_type, self.name, self.timeout, self.client = error_type, name, timeout, client
        self.url = url.rstrip("/")
        self.where = safe_url(self.url)
        self.hint = render(hint, {"where": self.where})  # e.g. "is etcd running at {where}?"
        self.login: Login | None = None
        self._secrets = (*secrets, *url_secrets(self.url))

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (*self._secrets, *(self.login.secrets if self.login else ()))

    async def call(self, method: str, path: str, *, hint: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await call(self.error_type, self.name, method, self.url + path, timeout=self.timeout,
                          secrets=self.secrets, client=self.client, hint=hint or self.hint, **kwargs)

    async def call_logged_in(self, method: str, path: str, *, refusal: int,
                             with_token: Callable[[str], dict[str, Any]], **kwargs: Any) -> tuple[int, Any]:
        """One call with the login's token (``with_token(token)``: the request arguments that carry it);
        ``refusal`` (the status of a token the server no longer knows) drops the token and repeats the call
        once with a fresh one. The answer is the last one: still ``refusal`` when the fresh token was refused."""
        login = self.login
        if login is None:
            return await self.call(method, path, **kwargs)
        ok = tuple(kwargs.pop("ok_statuses", ()))
        for attempt in (1, 2):
            token = await login.token()
            sent = {**kwargs, **{key: {**kwargs.get(key, {}), **value} for key, value in with_token(token).items()}}
            status, answer = await self.call(method, path, ok_statuses=(*ok, refusal), **sent)
            if status != refusal or attempt == 2:
                return status, answer
            login.forget(token)
        raise AssertionError("unreachable")  # pragma: no cover

    def fail(self, message: str) -> GrayliftError:
        """The backend's error, every secret masked."""
        return self.error_type(scrub(message, self.secrets))


class Login:
    """A backend's login (etcd, Nacos): ``POST <path>`` with the credentials, the token in ``answer[key]``.

    The token is shared by the backend's concurrent requests: one login at a time, the others wait for it
    and use its token. A token the server refuses (it expired, or the server restarted) is forgotten, and
    the next request logs in again.
    """

    def __init__(self, api: Api, path: str, *, user: str, password: str, key: str, **request: Any) -> None:
        self.api, self.path, self.user, self.password, self.key, self.request = api, path, user, password, key, request
        self.current: str | None = None
        self._gate = LoopSemaphores(1)

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return self.password, self.current

    async def token(self) -> str:
        async with self._gate("login"):
            if self.current is None:
                _, answer = await self.api.call("POST", self.path, hint=f"is the server at {self.api.where} up, and "
                                                f"are the user {self.user!r} and its password right?", **self.request)
                token = answer.get(self.key) if isinstance(answer, dict) else None
                if not token:
                    raise self.api.fail(f"{self.api.name}: the login as {self.user!r} at {self.api.where} returned "
                                        f"no {self.key}; check the username/password")
                self.current = str(token)
            return self.current

    def forget(self, token: str) -> None:
        if self.current == token:
            self.current = None
