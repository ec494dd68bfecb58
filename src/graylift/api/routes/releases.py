"""Apps and their environments, plans, releases (starting, reading, following, the requests of the CLI) and the
approvals of release requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from graylift.api import answers as a
from graylift.api import schemas as s
from graylift.api import sse
from graylift.api.deps import ActorDep, desk_of
from graylift.auth import Action, AppEnv, Desk, Started
from graylift.errors import GrayliftError
from graylift.service import JournalEntry
from graylift.service.catalog import listed_versions
from graylift.web.render import log_text

router = APIRouter()


def started_out(desk: Desk, started: Started, response: Response) -> a.StartedOut:
    """A release that started (201), or the request waiting for approval (202)."""
    if started.request is not None:
        response.status_code = 202
        return a.StartedOut(request=a.request_out(started.request))
    assert started.release is not None
    return a.StartedOut(release=a.release_view(desk, started.release))


# ---------------------------------------------------------------------------------------------- apps
@router.get("/apps", response_model=list[a.AppEnvOut], tags=["apps"])
def apps(request: Request, actor: ActorDep) -> list[dict[str, object]]:
    desk = desk_of(request)
    rows = desk.overview(actor)
    return [a.app_env_out(r, a.release_view(desk, r.active) if r.active else None) for r in rows]


@router.get("/apps/{app}/envs/{env}", response_model=a.AppEnvDetailOut, tags=["apps"])
def app_env(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath) -> dict[str, object]:
    desk = desk_of(request)
    desk.require(actor, Action.VIEW, app, env)
    current, previous = desk.versions(app, env)
    active = desk.gl.store.active_release(app, env)
    waiting = desk.requests(actor, state="waiting", app=app, env=env)
    row = AppEnv(app, env, current, previous, active, waiting)
    try:
        listed = listed_versions(desk.gl, app, env)
    except GrayliftError:
        listed = None
    return a.app_env_out(row, a.release_view(desk, active) if active else None) | {
        "deployed": desk.gl.deployed_versions(app, env), "bad_versions": desk.gl.store.bad_versions(app, env),
        "listed_versions": listed, "approvals_needed": desk.approvals_needed(app, env)}


@router.post("/apps/{app}/envs/{env}/rollback", response_model=a.StartedOut, status_code=201, tags=["releases"])
async def rollback_app(request: Request, response: Response, actor: ActorDep, app: s.NamePath, env: s.NamePath,
                       body: s.RollbackIn) -> a.StartedOut:
    """Roll back the active release, or start a rollback release to the last good version (or ``to``)."""
    desk = desk_of(request)
    started = await desk.start_rollback(actor, app, env, body.to, reason=body.reason, ticket=body.ticket)
    return started_out(desk, started, response)


# ---------------------------------------------------------------------------------------------- releases
@router.post("/plans", response_model=a.PlanOut, tags=["releases"])
async def plan(request: Request, actor: ActorDep, body: s.PlanIn) -> a.PlanOut:
    """The batches of a release and the read-only preflight of every host and backend; touches no host."""
    desk = desk_of(request)
    view = await desk.plan(actor, body.app, body.env, body.version)
    return a.plan_out(view, desk.approvals_needed(body.app, body.env), desk.plan_warnings(actor, body.app))


@router.post("/releases", response_model=a.StartedOut, status_code=201, tags=["releases"],
             responses={202: {"model": a.StartedOut, "description": "Waiting for approval"}})
async def start(request: Request, response: Response, actor: ActorDep, body: s.ReleaseIn) -> a.StartedOut:
    """Start a release (201), or, where the environment needs approval, record a request for it (202)."""
    desk = desk_of(request)
    started = await desk.start_release(actor, body.app, body.env, body.version, reason=body.reason,
                                       ticket=body.ticket, override=body.override)
    return started_out(desk, started, response)


@router.get("/releases", response_model=a.Page[a.ReleaseOut], tags=["releases"])
def releases(request: Request, actor: ActorDep, app: s.NameQuery = None, env: s.NameQuery = None,
             state: s.NameQuery = None, kind: s.NameQuery = None, before: s.Before = None,
             limit: s.Limit = 50) -> dict[str, object]:
    desk = desk_of(request)
    recs = desk.releases(actor, app=app, env=env, state=state, kind=kind, before_id=before, limit=limit)
    return a.page(a.releases_view(desk, recs), limit, [r.id for r in recs])


@router.get("/releases/{release_id}", response_model=a.ReleaseOut, tags=["releases"])
def release(request: Request, actor: ActorDep, release_id: s.IdPath) -> a.ReleaseOut:
    desk = desk_of(request)
    return a.release_view(desk, desk.release(actor, release_id))


@router.get("/releases/{release_id}/hosts", response_model=list[a.HostRunOut], tags=["releases"])
def release_hosts(request: Request, actor: ActorDep, release_id: s.IdPath) -> list[a.HostRunOut]:
    desk = desk_of(request)
    desk.release(actor, release_id)
    return [a.host_run_out(r) for r in desk.gl.host_runs(release_id)]


@router.get("/releases/{release_id}/journal", response_model=list[a.JournalOut], tags=["releases"])
def release_journal(request: Request, actor: ActorDep, release_id: s.IdPath,
                    after: Annotated[int, Query(ge=0, le=2**62)] = 0, host: s.NameQuery = None,
                    limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[JournalEntry]:
    desk = desk_of(request)
    desk.release(actor, release_id)
    return list(desk.gl.store.journal_entries(release_id, host, after)[:limit])


@router.get("/releases/{release_id}/log", response_class=PlainTextResponse, tags=["releases"])
def release_log(request: Request, actor: ActorDep, release_id: s.IdPath) -> PlainTextResponse:
    """The whole journal as text, one entry a line (the console's "download log")."""
    desk = desk_of(request)
    rec = desk.release(actor, release_id)
    text = log_text(rec, desk.gl.store.journal_entries(release_id))
    return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="release-{rec.id}.log"'})


@router.get("/releases/{release_id}/events", tags=["releases"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}})
async def release_events(request: Request, actor: ActorDep, release_id: s.IdPath,
                         after: s.AfterQuery = None) -> StreamingResponse:
    """Server-sent events: ``release`` (the release, when it changes), ``journal`` (each new entry), ``end``.
    Reconnect with ``Last-Event-ID`` (or ``?after=``) to get only what was missed."""
    desk_of(request).release(actor, release_id)

    def render(tick: sse.Tick) -> list[tuple[str, str]]:
        out = [("journal", a.JournalOut.model_validate(e).model_dump_json()) for e in tick.entries]
        if tick.first or tick.changed:
            out.insert(0, ("release", a.release_out(tick.release, gone=False).model_dump_json()))
        return out

    return sse.response(request, actor, release_id, after, render)


@router.post("/releases/{release_id}/{action}", response_model=a.ReleaseOut, tags=["releases"])
def control(request: Request, actor: ActorDep, release_id: s.IdPath, action: s.ControlAction,
            body: s.ControlIn) -> a.ReleaseOut:
    """promote, pause, resume, retry, abort (stop: hosts done keep the new version), rollback (stop and go
    back); a worker acts on it at the next safe point."""
    desk = desk_of(request)
    return a.release_view(desk, desk.control(actor, release_id, action, reason=body.reason))


# ---------------------------------------------------------------------------------------------- approvals
@router.get("/requests", response_model=list[a.RequestOut], tags=["approvals"])
def requests(request: Request, actor: ActorDep, state: s.NameQuery = "waiting", app: s.NameQuery = None,
             env: s.NameQuery = None, limit: s.Limit = 100) -> list[a.RequestOut]:
    desk = desk_of(request)
    return [a.request_out(r, desk.accounts.approvals(r.id))
            for r in desk.requests(actor, state=state, app=app, env=env, limit=limit)]


@router.get("/requests/{request_id}", response_model=a.RequestOut, tags=["approvals"])
def release_request(request: Request, actor: ActorDep, request_id: s.IdPath) -> a.RequestOut:
    desk = desk_of(request)
    req = desk.request(actor, request_id)
    return a.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/approve", response_model=a.RequestOut, tags=["approvals"])
async def approve(request: Request, actor: ActorDep, request_id: s.IdPath, body: s.DecisionIn) -> a.RequestOut:
    """Approve someone else's request; with enough approvals the release starts, from the request's fields."""
    desk = desk_of(request)
    req = await desk.approve(actor, request_id, body.comment)
    return a.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/reject", response_model=a.RequestOut, tags=["approvals"])
def reject(request: Request, actor: ActorDep, request_id: s.IdPath, body: s.DecisionIn) -> a.RequestOut:
    desk = desk_of(request)
    req = desk.reject(actor, request_id, body.comment)
    return a.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/cancel", response_model=a.RequestOut, tags=["approvals"])
def cancel(request: Request, actor: ActorDep, request_id: s.IdPath) -> a.RequestOut:
    return a.request_out(desk_of(request).cancel(actor, request_id))


@router.post("/requests/{request_id}/start", response_model=a.RequestOut, tags=["approvals"])
async def start_approved(request: Request, actor: ActorDep, request_id: s.IdPath) -> a.RequestOut:
    """Start an approved request whose start was refused before (a freeze window, a running release)."""
    desk = desk_of(request)
    req = await desk.start_approved(actor, request_id)
    return a.request_out(req, desk.accounts.approvals(req.id))
