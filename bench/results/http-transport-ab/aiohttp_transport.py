"""The aiohttp transport for httpx that was tried under ``graylift.adapters._http.new_client`` (as
``graylift/adapters/_aiohttp.py``) and not landed: it halves the HTTP client's CPU per request, but no release
measured here changed, and its import costs every process that sends a request (README.md beside this file).
Kept for ``per_request.py``. What it was:

httpx's requests sent by aiohttp: the transport under every client :func:`graylift.adapters._http.new_client`
makes (the kept clients of Alertmanager and nginx Plus; the one-request clients of :func:`~graylift.adapters.
_http.call` for Prometheus, Zabbix, etcd, Nacos, Consul and Eureka).

httpx's own transport (httpcore over anyio and h11, all pure Python) costs several times the CPU of the request
itself, a known gap (encode/httpx#3215); a release sends three Alertmanager requests per host, so at 1000 hosts
that was a large part of the controller's CPU. aiohttp parses HTTP in C; under httpx's client it took the CPU
of a host's three silence requests to 0.52-0.61x httpx's own (per_request.json). The API
stays httpx's: callers build and read ``httpx.Request`` and ``httpx.Response``, aiohttp's errors are raised as
httpx's (so ``_http.translated`` turns them into one line as before), tests keep ``httpx.MockTransport``.

What it does not do, and no backend through ``new_client`` asks for: proxies (graylift ignores the
environment's), HTTP/2, client certificates. Redirects are httpx's to follow or not (aiohttp never follows).
aiohttp is imported at the first request, so a command that sends none does not pay for its import.

A transport belongs to the event loop of its first request (as aiohttp's session does); a request from another
loop gets a new session, and the old one is let go without a report of an unclosed session.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import ssl

    import aiohttp


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession`` (its connections kept alive).

    ``tls`` gives the verifying TLS context for https URLs; it is asked for only when one is sent to."""

    def __init__(self, tls: Callable[[], ssl.SSLContext]) -> None:
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp
        import yarl

        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        if url.userinfo:  # httpx has made the Authorization header of it; aiohttp refuses both at once
            url = url.copy_with(username=None, password=None)
        body = await request.aread()
        try:
            response = await self._session_here().request(
                request.method, yarl.URL(str(url), encoded=True),  # httpx has quoted it already
                headers=request.headers.multi_items(), data=body or None, allow_redirects=False,
                ssl=self._tls() if url.scheme == "https" else True,
                timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.get("pool"),
                                              sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise as_httpx(exc, request) from exc
        return httpx.Response(response.status, headers=list(response.raw_headers), stream=_Body(response, request),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (response.reason or "").encode()})

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._loop is asyncio.get_running_loop():
            await session.close()
        else:
            _let_go(session)

    def _session_here(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            if self._session is not None and self._finalizer is not None:
                self._finalizer()  # the old loop's session: its loop cannot close it from here
            # auto_decompress off: httpx decodes the body by its Content-Encoding, as with its own transport
            self._session = aiohttp.ClientSession(auto_decompress=False, trust_env=False)
            self._loop = loop
            self._finalizer = weakref.finalize(self, _let_go, self._session)
        return self._session


def _let_go(session: aiohttp.ClientSession) -> None:
    """A session whose loop will not close it (another loop's, or a transport never closed): its sockets are
    closed if that loop still can, and it counts as closed, so aiohttp reports no unclosed session. aiohttp's
    own ``__del__`` does the same through ``_close``; the public ``close()`` needs the session's loop running."""
    connector = session.connector
    if connector is not None and not connector.closed:
        connector._close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise as_httpx(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()  # the connection back to the pool, or closed if the body was not read to its end


def as_httpx(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's error as the httpx error its own transport raises for the same failure."""
    import aiohttp

    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientOSError):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(message, request=request)


__all__ = ["AiohttpTransport", "as_httpx"]
