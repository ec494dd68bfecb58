"""The console: server-rendered pages (Jinja2), htmx for confirmations and the plan, server-sent events for
the live release page. Every page, fragment and stream goes through the same authentication and the desk's
role checks as the API; every form post carries the session's CSRF token (checked in
:func:`graylift.api.deps.actor`), and no form field ever reaches a shell: values go to the desk as data."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from graylift.api import problems, sse
from graylift.api import schemas as s
from graylift.api.deps import SESSION_COOKIE, ActorDep, CsrfFailed, ServerSettings, desk_of, source_of
from graylift.auth import Action, Actor, InputError, Unauthenticated
from graylift.auth.rules import covers
from graylift.auth.secrets import same
from graylift.core.plan import Plan
from graylift.errors import GrayliftError
from graylift.journal_lines import line_of
from graylift.web import render

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["labels"] = render.LABELS
LOGIN_CSRF = "graylift_login_csrf"
FLASH = "graylift_flash"
Action_ = Annotated[str, PathParam(pattern=r"^(promote|pause|resume|retry|abort|rollback)$")]
Field = Annotated[str, Form(max_length=2000)]
NameField = Annotated[str, Form(pattern=s.NAME_PATTERN)]


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def page(request: Request, template: str, actor: Actor | None, status: int = 200, **context: Any) -> HTMLResponse:
    flash = request.cookies.get(FLASH)
    response = templates.TemplateResponse(request, template, {
        "actor": actor, "csrf": getattr(request.state, "csrf", ""), "flash": flash, "now": datetime.now(UTC),
        "is_admin": actor.is_admin if actor else False, **context}, status_code=status)
    if flash:
        response.delete_cookie(FLASH, path="/")
    return response


def fragment(request: Request, template: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {"csrf": getattr(request.state, "csrf", ""),
                                                          "now": datetime.now(UTC), **context})


def back(url: str, flash: str | None = None, *, htmx: bool = False) -> Response:
    response: Response
    if htmx:
        response = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH, flash[:300], max_age=30, path="/", httponly=True, samesite="lax")
    return response


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def console_error(request: Request, exc: Exception) -> Response | None:
    """How a console request's error is shown (None: it is an API request, problem+json)."""
    path = request.url.path
    if path.startswith(("/api/", "/metrics", "/openapi.json", "/docs")):
        return None
    if isinstance(exc, Unauthenticated) and not isinstance(exc, CsrfFailed):
        target = "/login?next=" + quote(path if path.startswith("/") and not path.startswith("//") else "/")
        if path.endswith("/stream"):
            return Response(str(exc), status_code=401, media_type="text/plain")
        return back(target, htmx=is_htmx(request))
    status = problems.for_error(exc, path).status_code if isinstance(exc, GrayliftError) else 500
    if is_htmx(request):
        response = fragment(request, "_flash.html", error=str(exc))
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return page(request, "error.html", None, status=status, error=str(exc))


# ---------------------------------------------------------------------------------------------- login
@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=500)] = "/") -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, login_csrf=token, next=next, error=None)
    response.set_cookie(LOGIN_CSRF, token, max_age=600, path="/login", httponly=True, samesite="strict",
                        secure=_settings(request).cookie_secure)
    return response


@router.post("/login")
def login(request: Request, name: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=200)], csrf_token: Annotated[str, Form(max_length=100)],
          next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not same(expected, csrf_token):
        return page(request, "login.html", None, status=400, login_csrf=expected, next=next,
                    error="the login form expired; reload the page")
    try:
        session_id, _csrf, _actor = desk_of(request).login(name, password, source=source_of(request))
    except Unauthenticated as exc:
        token = secrets.token_urlsafe(24)
        response: Response = page(request, "login.html", None, status=401, login_csrf=token, next=next, error=str(exc))
        response.set_cookie(LOGIN_CSRF, token, max_age=600, path="/login", httponly=True, samesite="strict")
        return response
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=12 * 3600, path="/", httponly=True, samesite="lax",
                        secure=_settings(request).cookie_secure)
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, actor: ActorDep) -> Response:
    desk_of(request).logout(actor, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------------------------- pages
@router.get("/")
def overview(request: Request, actor: ActorDep) -> Response:
    desk = desk_of(request)
    return page(request, "overview.html", actor, rows=desk.overview(actor), freezes=desk.freezes(actor),
                waiting=desk.requests(actor, state="waiting"))


@router.get("/releases")
def releases(request: Request, actor: ActorDep, app: s.NameQuery = None, env: s.NameQuery = None,
             state: s.NameQuery = None, before: s.Before = None) -> Response:
    desk = desk_of(request)
    recs = desk.releases(actor, app=app or None, env=env or None, state=state or None, before_id=before, limit=50)
    return page(request, "releases.html", actor, releases=recs, info=desk.info([r.id for r in recs]),
                filters={"app": app or "", "env": env or "", "state": state or ""},
                next_before=recs[-1].id if len(recs) == 50 else None)


def _header_context(request: Request, actor: Actor, rec: Any, runs: list[Any]) -> dict[str, Any]:
    desk = desk_of(request)
    info, approvals = desk.origin(rec.id)
    allowed = [a for a in render.allowed_actions(rec) if desk.can(actor, Action(a), rec.app, rec.env)]
    return {"rec": rec, "info": info, "approvals": approvals, "actions": allowed, "counts": render.counts(runs),
            "gone": desk.gl.controller_gone(rec)}


@router.get("/releases/{release_id}")
def release(request: Request, actor: ActorDep, release_id: s.IdPath) -> Response:
    desk = desk_of(request)
    rec = desk.release(actor, release_id)
    runs = desk.gl.host_runs(rec.id)
    entries = desk.gl.store.journal_entries(rec.id)
    lines = [(e.id, e.at, text) for e in entries[-500:] if (text := line_of(e)) is not None]
    return page(request, "release.html", actor, **_header_context(request, actor, rec, runs),
                rows=render.grid(rec, runs, datetime.now(UTC)), plan=Plan.from_dict(rec.plan), lines=lines,
                last_id=entries[-1].id if entries else 0, truncated=len(entries) > 500)


@router.get("/releases/{release_id}/stream")
async def release_stream(request: Request, actor: ActorDep, release_id: s.IdPath,
                         after: s.AfterQuery = None) -> StreamingResponse:
    """The release page's live parts as HTML fragments: ``header``, ``grid`` and ``log`` lines."""
    await run_in_threadpool(desk_of(request).release, actor, release_id)

    def draw(tick: sse.Tick) -> list[tuple[str, str]]:
        out = []
        lines = [(e.id, e.at, text) for e in tick.entries if (text := line_of(e)) is not None]
        if lines:
            out.append(("log", templates.get_template("_log.html").render(lines=lines)))
        header = _header_context(request, actor, tick.release, tick.runs)
        out.append(("header", templates.get_template("_header.html").render(csrf=request.state.csrf
                                                                              if hasattr(request.state, "csrf")
                                                                              else "", **header)))
        out.append(("grid", templates.get_template("_grid.html").render(
            rec=tick.release, rows=render.grid(tick.release, tick.runs, datetime.now(UTC)))))
        return out

    return sse.response(request, actor, release_id, after, draw)


@router.get("/releases/{release_id}/confirm/{action}")
def confirm(request: Request, actor: ActorDep, release_id: s.IdPath, action: Action_) -> Response:
    desk = desk_of(request)
    rec = desk.release(actor, release_id)
    desk.require(actor, Action(action), rec.app, rec.env, f"release #{rec.id}")
    title, lines, needs_reason = render.confirmation(rec, desk.gl.host_runs(rec.id), action)
    return fragment(request, "_confirm.html", title=title, lines=lines, needs_reason=needs_reason,
                    post=f"/releases/{rec.id}/do/{action}", button=render.LABELS[action], danger=action in
                    ("abort", "rollback"))


@router.post("/releases/{release_id}/do/{action}")
def do(request: Request, actor: ActorDep, release_id: s.IdPath, action: Action_, reason: Field = "") -> Response:
    if action in ("abort", "rollback") and not reason.strip():
        raise InputError("give a reason: it goes to the audit log and the release's history")
    rec = desk_of(request).control(actor, release_id, action, reason=reason)
    return fragment(request, "_flash.html", ok=f"release #{rec.id}: {action} requested ({rec.state.value})")


@router.get("/releases/{release_id}/hosts/{host}")
def release_host(request: Request, actor: ActorDep, release_id: s.IdPath, host: s.NamePath) -> Response:
    desk = desk_of(request)
    rec = desk.release(actor, release_id)
    entries = desk.gl.store.journal_entries(rec.id, host)
    return fragment(request, "_host_steps.html", host=host, entries=entries, line_of=line_of)


@router.get("/apps/{app}")
def app_page(request: Request, actor: ActorDep, app: s.NamePath) -> Response:
    desk = desk_of(request)
    rows = [r for r in desk.overview(actor) if r.app == app]
    if not rows:
        desk.require(actor, Action.VIEW, app, "*")
    history = desk.releases(actor, app=app, limit=100)
    deployed = {r.env: desk.gl.deployed_versions(app, r.env)[:10] for r in rows}
    return page(request, "app.html", actor, app=app, rows=rows, history=history, deployed=deployed,
                info=desk.info([r.id for r in history]),
                can_rollback={r.env: desk.can(actor, Action.ROLLBACK, app, r.env) for r in rows})


@router.get("/apps/{app}/envs/{env}/confirm-rollback")
def confirm_rollback(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath) -> Response:
    desk = desk_of(request)
    desk.require(actor, Action.ROLLBACK, app, env)
    active = desk.gl.store.active_release(app, env)
    if active is not None:
        return confirm(request, actor, active.id, "rollback")
    current = desk.gl.current_version(app, env)
    target = desk.gl.previous_good_version(app, env, current)
    hosts = desk.gl.list_hosts(app, env)
    lines = [f"Target: {app} {target} in {env} (from {current or '(none)'}): a rollback release, labelled as one "
             "in the history.", f"{len(hosts)} host(s) in the inventory; never half or more out at once.",
             f"{current} is marked bad and no later rollback goes back to it."]
    return fragment(request, "_confirm.html", title=f"Roll back {app} in {env} to {target}?", lines=lines,
                    needs_reason=True, post=f"/apps/{app}/envs/{env}/rollback", button="Roll back", danger=True)


@router.post("/apps/{app}/envs/{env}/rollback")
async def rollback(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath, reason: Field = "") -> Response:
    if not reason.strip():
        raise InputError("give a reason: it goes to the audit log and the release's history")
    started = await desk_of(request).start_rollback(actor, app, env, None, reason=reason)
    if started.request is not None:
        return back("/approvals", f"rollback request #{started.request.id} waits for approval", htmx=is_htmx(request))
    assert started.release is not None
    return back(f"/releases/{started.release.id}", htmx=is_htmx(request))


@router.get("/apps/{app}/envs/{env}/hosts/{host}")
def host_page(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath, host: s.NamePath) -> Response:
    desk = desk_of(request)
    visits = desk.host_timeline(actor, app, env, host)
    spec = next((h for h in desk.gl.list_hosts(app, env) if h.name == host), None)
    return page(request, "host.html", actor, app=app, env=env, host=host, spec=spec, visits=visits)


@router.get("/new")
def new_release(request: Request, actor: ActorDep, app: s.NameQuery = None, env: s.NameQuery = None) -> Response:
    from graylift.service.catalog import listed_versions

    desk = desk_of(request)
    rows = [r for r in desk.overview(actor) if desk.can(actor, Action.START, r.app, r.env)]
    versions: list[str] = []
    if app and env:
        try:
            versions = listed_versions(desk.gl, app, env) or []
        except GrayliftError:
            versions = []
        versions += [d.version for d in desk.gl.deployed_versions(app, env) if d.version not in versions]
    return page(request, "new.html", actor, rows=rows, app=app or "", env=env or "", versions=versions)


@router.post("/new/plan")
async def new_plan(request: Request, actor: ActorDep,
                   appenv: Annotated[str, Form(pattern=r"^[A-Za-z0-9._+-]{1,128}\|[A-Za-z0-9._+-]{1,128}$")],
                   version: NameField) -> Response:
    desk = desk_of(request)
    app, env = appenv.split("|")
    view = await desk.plan(actor, app, env, version)
    freeze = next((f for f in desk.freezes(actor) if covers(f, app, env, datetime.now(UTC))), None)
    return fragment(request, "_plan.html", view=view, approvals=desk.approvals_needed(app, env),
                    warnings=desk.plan_warnings(actor, app), freeze=freeze, is_admin=actor.is_admin)


@router.post("/new/start")
async def new_start(request: Request, actor: ActorDep, app: NameField, env: NameField, version: NameField,
                    reason: Field = "", ticket: Annotated[str, Form(max_length=128)] = "",
                    override: Field = "") -> Response:
    started = await desk_of(request).start_release(actor, app, env, version, reason=reason, ticket=ticket,
                                                   override=override or None)
    if started.request is not None:
        return back("/approvals", f"request #{started.request.id}: waiting for {started.request.approvals_needed} "
                    "approval(s)", htmx=is_htmx(request))
    assert started.release is not None
    return back(f"/releases/{started.release.id}", htmx=is_htmx(request))


@router.get("/approvals")
def approvals(request: Request, actor: ActorDep) -> Response:
    desk = desk_of(request)
    waiting = desk.requests(actor, state="waiting") + desk.requests(actor, state="approved")
    recent = [r for r in desk.requests(actor, state=None, limit=30) if r.state not in ("waiting", "approved")]
    decided = {r.id: desk.accounts.approvals(r.id) for r in [*waiting, *recent]}
    can = {r.id: desk.can(actor, Action.APPROVE, r.app, r.env) and r.requested_by != actor.name for r in waiting}
    return page(request, "approvals.html", actor, waiting=waiting, recent=recent, decided=decided, can=can)


@router.post("/approvals/{request_id}/{decision}")
async def decide(request: Request, actor: ActorDep, request_id: s.IdPath,
                 decision: Annotated[str, PathParam(pattern=r"^(approve|reject|cancel|start)$")],
                 comment: Field = "") -> Response:
    desk = desk_of(request)
    if decision == "approve":
        req = await desk.approve(actor, request_id, comment)
    elif decision == "reject":
        req = desk.reject(actor, request_id, comment)
    elif decision == "cancel":
        req = desk.cancel(actor, request_id)
    else:
        req = await desk.start_approved(actor, request_id)
    if req.release_id is not None and req.state == "started":
        return back(f"/releases/{req.release_id}", f"request #{req.id} approved: release #{req.release_id} started")
    return back("/approvals", f"request #{req.id}: {req.state}. {req.message}")


@router.get("/audit")
def audit(request: Request, actor: ActorDep, who: s.ActorQuery = None, action: s.NameQuery = None,
          app: s.NameQuery = None, before: s.Before = None) -> Response:
    entries = desk_of(request).audit_log(actor, actor=who or None, action=action or None, app=app or None,
                                         before_id=before, limit=100)
    return page(request, "audit.html", actor, entries=entries,
                filters={"actor": who or "", "action": action or "", "app": app or ""},
                next_before=entries[-1].id if len(entries) == 100 else None)


@router.get("/tokens")
def tokens(request: Request, actor: ActorDep) -> Response:
    return page(request, "tokens.html", actor, tokens=desk_of(request).tokens(actor, actor.name), created=None)


@router.post("/tokens")
def create_token(request: Request, actor: ActorDep, name: Annotated[str, Form(pattern=r"^[A-Za-z0-9._@-]{1,128}$")],
                 days: Annotated[int | None, Form(ge=1, le=3650)] = None) -> Response:
    desk = desk_of(request)
    token, secret = desk.create_token(actor, actor.name, name, days=days)
    return page(request, "tokens.html", actor, tokens=desk.tokens(actor, actor.name), created=(token, secret))


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, actor: ActorDep, token_id: s.IdPath) -> Response:
    token = desk_of(request).revoke_token(actor, token_id)
    return back("/tokens", f"token {token.name} ({token.prefix}...) revoked")


@router.get("/webhooks")
def webhooks(request: Request, actor: ActorDep) -> Response:
    desk = desk_of(request)
    hooks = desk.webhooks(actor)
    failures = {h.id: [d for d in desk.accounts.deliveries(webhook_id=h.id, limit=20) if d.last_error] for h in hooks}
    recent = {h.id: desk.accounts.deliveries(webhook_id=h.id, limit=5) for h in hooks}
    return page(request, "webhooks.html", actor, hooks=hooks, failures=failures, recent=recent)


__all__ = ["console_error", "router"]
