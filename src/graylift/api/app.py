"""``graylift serve``: one ASGI app with the JSON API (``/api/v1``, ``/openapi.json``), the console (``/``),
``/metrics`` and ``/healthz``; its lifespan runs the worker pool and the notifier on their own threads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from graylift import __version__
from graylift.api import problems
from graylift.api.deps import ActorDep, ServerSettings
from graylift.api.metrics import Metrics
from graylift.api.routes import router as api_router
from graylift.auth import Action, Desk
from graylift.errors import GrayliftError
from graylift.notify import Notifier
from graylift.pool import WorkerPool
from graylift.service import Graylift

log = logging.getLogger("graylift.server")
STATIC = Path(__file__).parent.parent / "web" / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Background:
    """The notifier on its own thread and event loop (a webhook never slows a request or a release)."""

    def __init__(self, notifier: Notifier, interval: float) -> None:
        self.notifier, self.interval = notifier, interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graylift-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self.notifier.run(self._stop, self.interval)

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def create_app(gl: Graylift, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    metrics = Metrics(gl)
    notifier = Notifier(gl.store, public_url=settings.url, backoff=settings.webhook_backoff,
                        max_attempts=settings.webhook_max_attempts, on_entries=metrics.observe)
    desk = Desk(gl, notify=notifier.desk_event)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.stopping = asyncio.Event()
        pool = WorkerPool(gl, max_releases=settings.max_releases, interval=settings.pool_interval,
                          take_over=settings.take_over) if settings.workers else None
        background = Background(notifier, settings.notify_interval) if settings.notify else None
        if pool is not None:
            pool.start()
        if background is not None:
            background.start()
        app.state.pool = pool
        try:
            yield
        finally:
            app.state.stopping.set()
            if background is not None:
                await asyncio.to_thread(background.stop)
            if pool is not None:
                await asyncio.to_thread(pool.stop)

    app = FastAPI(title="graylift", version=__version__, lifespan=lifespan,
                  description="Graceful, durable releases for fleets of VMs: the HTTP API of `graylift serve`. "
                              "Authenticate with `Authorization: Bearer <token>`; errors are problem+json.")
    app.state.desk, app.state.settings, app.state.metrics, app.state.notifier = desk, settings, metrics, notifier
    app.state.stopping = asyncio.Event()
    app.add_exception_handler(GrayliftError, _errors)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_exception_handler(HTTPException, problems.http_error)
    app.add_exception_handler(Exception, problems.internal_error)
    app.add_middleware(SecurityHeaders)
    app.include_router(api_router)

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, str]:
        """Liveness (no data, no authentication)."""
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["server"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def prometheus(request: Request, actor: ActorDep) -> Response:
        """Prometheus metrics (needs viewer on every app: a token with `viewer` on `* / *`)."""
        desk.require(actor, Action.VIEW, target="metrics")
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    from graylift.web.routes import router as web_router

    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _errors(request: Request, exc: Exception) -> Response:
    """The console gets a page (or a redirect to the login), the API problem+json."""
    from graylift.web.routes import console_error

    page = console_error(request, exc)
    if page is not None:
        return page
    return await problems.graylift_error(request, exc)
