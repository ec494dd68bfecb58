"""The JSON API under ``/api/v1``. Thin: every route authenticates (:func:`graylift.api.deps.actor`) and calls
the desk, which checks the role, the freeze windows and the approvals, and audits."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, StreamingResponse

from graylift.api import schemas as s
from graylift.api.deps import ActorDep, ServerSettings
from graylift.api.sse import Tick, start_after, stream
from graylift.auth import Action, Actor, Desk, InputError
from graylift.core.model import Host
from graylift.errors import GrayliftError, InventoryError
from graylift.service import ReleaseRecord, parse_hosts_file

router = APIRouter(prefix="/api/v1")
AppPath = Annotated[str, PathParam(pattern=s.NAME_PATTERN)]
EnvPath = AppPath
HostPath = AppPath
IdPath = Annotated[int, PathParam(ge=1, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=500)]
Before = Annotated[int | None, Query(ge=1, le=2**62)]
NameQuery = Annotated[str | None, Query(pattern=s.NAME_PATTERN)]


def desk_of(request: Request) -> Desk:
    return request.app.state.desk  # type: ignore[no-any-return]


def release_view(desk: Desk, rec: ReleaseRecord) -> s.ReleaseOut:
    info = desk.info([rec.id]).get(rec.id)
    approvals = desk.accounts.approvals(info.request_id) if info and info.request_id else []
    return s.release_out(rec, gone=desk.gl.controller_gone(rec), info=info, approvals=approvals)


def releases_view(desk: Desk, recs: list[ReleaseRecord]) -> list[s.ReleaseOut]:
    infos = desk.info([r.id for r in recs])
    return [s.release_out(r, gone=desk.gl.controller_gone(r), info=infos.get(r.id)) for r in recs]


def page(items: list[Any], limit: int, ids: list[int]) -> dict[str, object]:
    return {"items": items, "next_before": ids[-1] if len(ids) == limit and ids else None}


# ---------------------------------------------------------------------------------------------- who
@router.get("/me", response_model=s.MeOut, tags=["users"])
def me(actor: ActorDep) -> s.MeOut:
    return s.MeOut(name=actor.name, via=actor.via,
                   grants=[s.GrantOut(app=g.app, env=g.env, role=g.role) for g in actor.grants])


# ---------------------------------------------------------------------------------------------- apps
@router.get("/apps", response_model=list[s.AppEnvOut], tags=["apps"])
def apps(request: Request, actor: ActorDep) -> list[dict[str, object]]:
    desk = desk_of(request)
    rows = desk.overview(actor)
    return [s.app_env_out(r, release_view(desk, r.active) if r.active else None) for r in rows]


@router.get("/apps/{app}/envs/{env}", response_model=s.AppEnvDetailOut, tags=["apps"])
def app_env(request: Request, actor: ActorDep, app: AppPath, env: EnvPath) -> dict[str, object]:
    from graylift.service.catalog import listed_versions

    desk = desk_of(request)
    desk.require(actor, Action.VIEW, app, env)
    current, previous = desk.versions(app, env)
    active = desk.gl.store.active_release(app, env)
    waiting = desk.requests(actor, state="waiting", app=app, env=env)
    from graylift.auth import AppEnv

    row = AppEnv(app, env, current, previous, active, waiting)
    try:
        listed = listed_versions(desk.gl, app, env)
    except GrayliftError:
        listed = None
    return s.app_env_out(row, release_view(desk, active) if active else None) | {
        "deployed": [s.DeployedOut(version=d.version, release_id=d.release_id, at=d.at, source=d.source)
                     for d in desk.gl.deployed_versions(app, env)],
        "bad_versions": desk.gl.store.bad_versions(app, env), "listed_versions": listed,
        "approvals_needed": desk.approvals_needed(app, env)}


@router.get("/apps/{app}/envs/{env}/hosts", response_model=list[s.HostOut], tags=["hosts"])
def hosts(request: Request, actor: ActorDep, app: AppPath, env: EnvPath) -> list[s.HostOut]:
    return [s.HostOut(name=h.name, address=h.address, port=h.port, user=h.user, group=h.group, tags=dict(h.tags),
                      in_service=h.in_service) for h in desk_of(request).hosts(actor, app, env)]


@router.put("/apps/{app}/envs/{env}/hosts", tags=["hosts"])
def import_hosts(request: Request, actor: ActorDep, app: AppPath, env: EnvPath, body: s.HostsIn) -> dict[str, int]:
    """Replace the host list of app/env with the hosts given, or an inventory (YAML, Ansible INI or YAML)."""
    desk = desk_of(request)
    desk.require(actor, Action.HOSTS, app, env)
    if (body.hosts is None) == (body.inventory is None):
        raise InputError("give either hosts (a list) or inventory (the text of an inventory file)")
    if body.hosts is not None:
        found = [Host(h.name, h.address, port=h.port, user=h.user, group=h.group, tags=dict(h.tags),
                      in_service=h.in_service) for h in body.hosts]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"inventory.{body.format}"
            path.write_text(body.inventory or "")
            try:
                found = parse_hosts_file(path)
            except InventoryError as exc:
                raise InputError(str(exc).replace(str(path), "inventory")) from None
    return {"imported": desk.import_hosts(actor, app, env, found)}


@router.post("/apps/{app}/envs/{env}/hosts/{host}/maintenance", status_code=204, tags=["hosts"])
def maintenance(request: Request, actor: ActorDep, app: AppPath, env: EnvPath, host: HostPath,
                body: s.MaintenanceIn) -> Response:
    desk_of(request).maintenance(actor, app, env, host, body.in_service)
    return Response(status_code=204)


@router.post("/apps/{app}/envs/{env}/hosts/{host}/clear", tags=["hosts"])
def clear_host(request: Request, actor: ActorDep, app: AppPath, env: EnvPath, host: HostPath) -> dict[str, bool]:
    return {"cleared": desk_of(request).clear_host(actor, app, env, host)}


@router.get("/apps/{app}/envs/{env}/hosts/{host}/timeline", response_model=list[s.VisitOut], tags=["hosts"])
def host_timeline(request: Request, actor: ActorDep, app: AppPath, env: EnvPath, host: HostPath) -> list[s.VisitOut]:
    return [s.VisitOut(release_id=v.release_id, kind=v.kind, version=v.version, release_state=v.release_state,
                       state=v.state, step=v.step, target_version=v.target_version,
                       previous_version=v.previous_version, error=v.error, started_at=v.started_at,
                       finished_at=v.finished_at) for v in desk_of(request).host_timeline(actor, app, env, host)]


@router.post("/apps/{app}/envs/{env}/survey", response_model=list[s.SurveyOut], tags=["hosts"])
async def survey(request: Request, actor: ActorDep, app: AppPath, env: EnvPath, body: s.SurveyIn) -> list[s.SurveyOut]:
    rows = await desk_of(request).survey(actor, app, env, body.version)
    return [s.SurveyOut(host=r.host.name, layout=r.layout, version=r.version, sha256=r.sha256, serving=r.serving,
                        would=r.would) for r in rows]


@router.post("/apps/{app}/envs/{env}/rollback", response_model=s.StartedOut, status_code=201, tags=["releases"])
async def rollback_app(request: Request, response: Response, actor: ActorDep, app: AppPath, env: EnvPath,
                       body: s.RollbackIn) -> s.StartedOut:
    """Roll back the active release, or start a rollback release to the last good version (or ``to``)."""
    desk = desk_of(request)
    started = await desk.start_rollback(actor, app, env, body.to, reason=body.reason, ticket=body.ticket)
    return started_out(desk, started, response)


def started_out(desk: Desk, started: object, response: Response) -> s.StartedOut:
    from graylift.auth import Started

    assert isinstance(started, Started)
    if started.request is not None:
        response.status_code = 202
        return s.StartedOut(request=s.request_out(started.request))
    assert started.release is not None
    return s.StartedOut(release=release_view(desk, started.release))


# ---------------------------------------------------------------------------------------------- releases
@router.post("/plans", response_model=s.PlanOut, tags=["releases"])
async def plan(request: Request, actor: ActorDep, body: s.PlanIn) -> s.PlanOut:
    """The batches of a release and the read-only preflight of every host and backend; touches no host."""
    desk = desk_of(request)
    view = await desk.plan(actor, body.app, body.env, body.version)
    return s.plan_out(view, desk.approvals_needed(body.app, body.env), warnings(desk, actor, body.app, body.env))


def warnings(desk: Desk, actor: Actor, app: str, env: str) -> list[str]:
    """Other releases of the app running or waiting, in any environment."""
    found = [f"release #{r.id} of {r.app} {r.version} ({r.env}) is {r.state.value}"
             for r in desk.gl.active_releases() if r.app == app]
    found += [f"request #{q.id} for {q.app} {q.version or '(last good)'} ({q.env}) is waiting for approval"
              for q in desk.requests(actor, state="waiting", app=app)]
    return found


@router.post("/releases", response_model=s.StartedOut, status_code=201, tags=["releases"],
             responses={202: {"model": s.StartedOut, "description": "Waiting for approval"}})
async def start(request: Request, response: Response, actor: ActorDep, body: s.ReleaseIn) -> s.StartedOut:
    """Start a release (201), or, where the environment needs approval, record a request for it (202)."""
    desk = desk_of(request)
    started = await desk.start_release(actor, body.app, body.env, body.version, reason=body.reason,
                                       ticket=body.ticket, override=body.override)
    return started_out(desk, started, response)


@router.get("/releases", response_model=s.Page[s.ReleaseOut], tags=["releases"])
def releases(request: Request, actor: ActorDep, app: NameQuery = None, env: NameQuery = None,
             state: NameQuery = None, kind: NameQuery = None, before: Before = None,
             limit: Limit = 50) -> dict[str, object]:
    desk = desk_of(request)
    recs = desk.releases(actor, app=app, env=env, state=state, kind=kind, before_id=before, limit=limit)
    return page(releases_view(desk, recs), limit, [r.id for r in recs])


@router.get("/releases/{release_id}", response_model=s.ReleaseOut, tags=["releases"])
def release(request: Request, actor: ActorDep, release_id: IdPath) -> s.ReleaseOut:
    desk = desk_of(request)
    return release_view(desk, desk.release(actor, release_id))


@router.get("/releases/{release_id}/hosts", response_model=list[s.HostRunOut], tags=["releases"])
def release_hosts(request: Request, actor: ActorDep, release_id: IdPath) -> list[s.HostRunOut]:
    desk = desk_of(request)
    desk.release(actor, release_id)
    return [s.host_run_out(r) for r in desk.gl.host_runs(release_id)]


@router.get("/releases/{release_id}/journal", response_model=list[s.JournalOut], tags=["releases"])
def release_journal(request: Request, actor: ActorDep, release_id: IdPath,
                    after: Annotated[int, Query(ge=0, le=2**62)] = 0, host: NameQuery = None,
                    limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[s.JournalOut]:
    desk = desk_of(request)
    desk.release(actor, release_id)
    return [s.journal_out(e) for e in desk.gl.store.journal_entries(release_id, host, after)[:limit]]


@router.get("/releases/{release_id}/log", response_class=PlainTextResponse, tags=["releases"])
def release_log(request: Request, actor: ActorDep, release_id: IdPath) -> PlainTextResponse:
    """The whole journal as text, one entry a line (the console's "download log")."""
    from graylift.web.render import log_text

    desk = desk_of(request)
    rec = desk.release(actor, release_id)
    text = log_text(rec, desk.gl.store.journal_entries(release_id))
    return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="release-{rec.id}.log"'})


@router.get("/releases/{release_id}/events", tags=["releases"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}})
async def release_events(request: Request, actor: ActorDep, release_id: IdPath,
                         after: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> StreamingResponse:
    """Server-sent events: ``release`` (the release, when it changes), ``journal`` (each new entry), ``end``.
    Reconnect with ``Last-Event-ID`` (or ``?after=``) to get only what was missed."""
    desk = desk_of(request)
    settings: ServerSettings = request.app.state.settings
    desk.release(actor, release_id)

    def render(tick: Tick) -> list[tuple[str, str]]:
        out = [("journal", s.journal_out(e).model_dump_json()) for e in tick.entries]
        if tick.first or tick.changed:
            out.insert(0, ("release", s.release_out(tick.release, gone=False).model_dump_json()))
        return out

    return StreamingResponse(
        stream(request, desk.gl, release_id, start_after(request, after), render,
               lambda: desk.release(reauth(request, actor), release_id), poll=settings.stream_poll,
               heartbeat=settings.stream_heartbeat, stopping=request.app.state.stopping),
        media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def reauth(request: Request, actor: Actor) -> Actor:
    """The actor again, from the same credentials (a revoked token or ended session stops a stream)."""
    from graylift.api.deps import SESSION_COOKIE

    desk = desk_of(request)
    if actor.via.startswith("token:"):
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        return desk.authenticate_token(token, source=actor.source, trigger=actor.trigger)
    if actor.via == "session":
        return desk.authenticate_session(request.cookies.get(SESSION_COOKIE, ""), source=actor.source)[0]
    return actor


@router.post("/releases/{release_id}/{action}", response_model=s.ReleaseOut, tags=["releases"])
def control(request: Request, actor: ActorDep, release_id: IdPath, action: s.ControlAction,
            body: s.ControlIn) -> s.ReleaseOut:
    """promote, pause, resume, retry, abort (stop: hosts done keep the new version), rollback (stop and go
    back); a worker acts on it at the next safe point."""
    desk = desk_of(request)
    return release_view(desk, desk.control(actor, release_id, action, reason=body.reason))


# ---------------------------------------------------------------------------------------------- approvals
@router.get("/requests", response_model=list[s.RequestOut], tags=["approvals"])
def requests(request: Request, actor: ActorDep, state: NameQuery = "waiting", app: NameQuery = None,
             env: NameQuery = None, limit: Limit = 100) -> list[s.RequestOut]:
    desk = desk_of(request)
    return [s.request_out(r, desk.accounts.approvals(r.id))
            for r in desk.requests(actor, state=state, app=app, env=env, limit=limit)]


@router.get("/requests/{request_id}", response_model=s.RequestOut, tags=["approvals"])
def release_request(request: Request, actor: ActorDep, request_id: IdPath) -> s.RequestOut:
    desk = desk_of(request)
    req = desk.request(actor, request_id)
    return s.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/approve", response_model=s.RequestOut, tags=["approvals"])
async def approve(request: Request, actor: ActorDep, request_id: IdPath, body: s.DecisionIn) -> s.RequestOut:
    """Approve someone else's request; with enough approvals the release starts, from the request's fields."""
    desk = desk_of(request)
    req = await desk.approve(actor, request_id, body.comment)
    return s.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/reject", response_model=s.RequestOut, tags=["approvals"])
def reject(request: Request, actor: ActorDep, request_id: IdPath, body: s.DecisionIn) -> s.RequestOut:
    desk = desk_of(request)
    req = desk.reject(actor, request_id, body.comment)
    return s.request_out(req, desk.accounts.approvals(req.id))


@router.post("/requests/{request_id}/cancel", response_model=s.RequestOut, tags=["approvals"])
def cancel(request: Request, actor: ActorDep, request_id: IdPath) -> s.RequestOut:
    return s.request_out(desk_of(request).cancel(actor, request_id))


@router.post("/requests/{request_id}/start", response_model=s.RequestOut, tags=["approvals"])
async def start_approved(request: Request, actor: ActorDep, request_id: IdPath) -> s.RequestOut:
    """Start an approved request whose start was refused before (a freeze window, a running release)."""
    desk = desk_of(request)
    req = await desk.start_approved(actor, request_id)
    return s.request_out(req, desk.accounts.approvals(req.id))


# ---------------------------------------------------------------------------------------------- audit
@router.get("/audit", response_model=s.Page[s.AuditOut], tags=["audit"])
def audit(request: Request, actor: ActorDep, who: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
          action: NameQuery = None, app: NameQuery = None, env: NameQuery = None, before: Before = None,
          limit: Limit = 100) -> dict[str, object]:
    entries = desk_of(request).audit_log(actor, actor=who, action=action, app=app, env=env, before_id=before,
                                         limit=limit)
    return page([s.audit_out(e) for e in entries], limit, [e.id for e in entries])


# ---------------------------------------------------------------------------------------------- users, tokens
@router.get("/users", response_model=list[s.UserOut], tags=["users"])
def users(request: Request, actor: ActorDep) -> list[s.UserOut]:
    return [s.UserOut(name=u.name, disabled=u.disabled, has_password=u.has_password, created_at=u.created_at,
                      created_by=u.created_by, grants=[s.GrantOut(app=g.app, env=g.env, role=g.role) for g in grants])
            for u, grants in desk_of(request).users(actor)]


@router.post("/users", status_code=201, response_model=s.UserOut, tags=["users"])
def create_user(request: Request, actor: ActorDep, body: s.UserIn) -> s.UserOut:
    from graylift.auth import Grant

    desk = desk_of(request)
    grants = [Grant(g.app, g.env, g.role) for g in body.grants]
    u = desk.create_user(actor, body.name, body.password, grants)
    return s.UserOut(name=u.name, disabled=u.disabled, has_password=u.has_password, created_at=u.created_at,
                     created_by=u.created_by, grants=[s.GrantOut(app=g.app, env=g.env, role=g.role) for g in grants])


@router.put("/users/{name}/grants/{app}/{env}", status_code=204, tags=["users"])
def grant(request: Request, actor: ActorDep, name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
          app: Annotated[str, PathParam(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")],
          env: Annotated[str, PathParam(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")], body: s.RoleIn) -> Response:
    desk_of(request).grant(actor, name, app, env, body.role)
    return Response(status_code=204)


@router.delete("/users/{name}/grants/{app}/{env}", tags=["users"])
def revoke_grant(request: Request, actor: ActorDep,
                 name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
                 app: Annotated[str, PathParam(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")],
                 env: Annotated[str, PathParam(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")]) -> dict[str, bool]:
    return {"removed": desk_of(request).revoke_grant(actor, name, app, env)}


@router.put("/users/{name}/password", status_code=204, tags=["users"])
def password(request: Request, actor: ActorDep, name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
             body: s.PasswordIn) -> Response:
    desk_of(request).set_password(actor, name, body.password)
    return Response(status_code=204)


@router.post("/users/{name}/{what}", status_code=204, tags=["users"])
def enable(request: Request, actor: ActorDep, name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
           what: Literal["enable", "disable"]) -> Response:
    desk_of(request).set_disabled(actor, name, what == "disable")
    return Response(status_code=204)


@router.get("/tokens", response_model=list[s.TokenOut], tags=["users"])
def tokens(request: Request, actor: ActorDep,
           user: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._@-]{1,64}$")] = None) -> list[s.TokenOut]:
    return [s.token_out(t) for t in desk_of(request).tokens(actor, user)]


@router.post("/tokens", status_code=201, response_model=s.NewTokenOut, tags=["users"])
def create_token(request: Request, actor: ActorDep, body: s.TokenIn) -> s.NewTokenOut:
    """A new API token; the answer holds the token itself, this once (only its hash is kept)."""
    token, secret = desk_of(request).create_token(actor, body.user or actor.name, body.name, days=body.days)
    return s.NewTokenOut(**s.token_out(token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", response_model=s.TokenOut, tags=["users"])
def revoke_token(request: Request, actor: ActorDep, token_id: IdPath) -> s.TokenOut:
    return s.token_out(desk_of(request).revoke_token(actor, token_id))


# ---------------------------------------------------------------------------------------------- policies, freezes
@router.get("/policies", response_model=list[s.PolicyOut], tags=["policies"])
def policies(request: Request, actor: ActorDep) -> list[s.PolicyOut]:
    return [s.policy_out(p) for p in desk_of(request).policies(actor)]


@router.put("/policies/{app}/{env}", response_model=s.PolicyOut, tags=["policies"])
def set_policy(request: Request, actor: ActorDep,
               app: Annotated[str, PathParam(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")], env: EnvPath,
               body: s.PolicyIn) -> s.PolicyOut:
    """How many approvals (by people other than the requester) a release of app/env needs."""
    return s.policy_out(desk_of(request).set_policy(actor, app, env, body.approvals, body.approve_rollbacks))


@router.get("/freezes", response_model=list[s.FreezeOut], tags=["policies"])
def freezes(request: Request, actor: ActorDep) -> list[s.FreezeOut]:
    return [s.freeze_out(f) for f in desk_of(request).freezes(actor)]


@router.post("/freezes", status_code=201, response_model=s.FreezeOut, tags=["policies"])
def add_freeze(request: Request, actor: ActorDep, body: s.FreezeIn) -> s.FreezeOut:
    return s.freeze_out(desk_of(request).add_freeze(actor, body.app, body.env, body.starts_at, body.ends_at,
                                                    body.reason))


@router.delete("/freezes/{freeze_id}", status_code=204, tags=["policies"])
def delete_freeze(request: Request, actor: ActorDep, freeze_id: IdPath) -> Response:
    desk_of(request).delete_freeze(actor, freeze_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------- webhooks
@router.get("/webhooks", response_model=list[s.WebhookOut], tags=["webhooks"])
def webhooks(request: Request, actor: ActorDep) -> list[s.WebhookOut]:
    return [s.webhook_out(w) for w in desk_of(request).webhooks(actor)]


@router.post("/webhooks", status_code=201, response_model=s.WebhookOut, tags=["webhooks"])
def add_webhook(request: Request, actor: ActorDep, body: s.WebhookIn) -> s.WebhookOut:
    desk = desk_of(request)
    hook = desk.add_webhook(actor, name=body.name, channel=body.channel, url=body.url, secret=body.secret,
                            app=body.app, env=body.env, events=list(body.events), template=body.template)
    return next(s.webhook_out(w) for w in desk.webhooks(actor) if w.id == hook.id)


@router.delete("/webhooks/{hook_id}", status_code=204, tags=["webhooks"])
def delete_webhook(request: Request, actor: ActorDep, hook_id: IdPath) -> Response:
    desk_of(request).delete_webhook(actor, hook_id)
    return Response(status_code=204)


@router.get("/webhooks/{hook_id}/deliveries", response_model=list[s.DeliveryOut], tags=["webhooks"])
def deliveries(request: Request, actor: ActorDep, hook_id: IdPath, state: NameQuery = None,
               limit: Limit = 100) -> list[s.DeliveryOut]:
    desk = desk_of(request)
    desk.require(actor, Action.ADMINISTER, target=f"webhook #{hook_id}")
    desk.accounts.webhook(hook_id)
    return [s.delivery_out(d) for d in desk.accounts.deliveries(webhook_id=hook_id, state=state, limit=limit)]
