"""What the API answers (the answers make the OpenAPI document's response schemas), and records -> answers.

A record the API shows as it is, is its own answer: an audit entry, an API token, an approval, a freeze window,
a host's visit (the store's records). An answer that shows some fields of a record reads them from it
(:class:`Reads`); the others are put together here from several records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from graylift.auth import AppEnv, Desk, Grant
from graylift.core.bluegreen import describe
from graylift.core.plan import Plan
from graylift.service import HostRunRecord, PlanView, ReleaseRecord
from graylift.store.accounts import Approval, ReleaseInfo, ReleaseRequest, Token, User, Webhook

T = TypeVar("T")


class Reads(BaseModel):
    """An answer that shows some fields of a record, read from the record's attributes."""

    model_config = ConfigDict(from_attributes=True)


class MeOut(Reads):
    name: str
    via: str
    grants: list[Grant]


class InfoOut(BaseModel):
    trigger: str
    reason: str
    ticket: str
    request_id: int | None
    override: str | None
    approvals: list[Approval] = Field(default_factory=list)


class BatchOut(BaseModel):
    index: int
    label: str
    canary: bool
    hosts: list[str]


class ReleaseOut(BaseModel):
    id: int
    app: str
    env: str
    kind: str
    version: str
    previous_version: str | None
    state: str
    direction: str
    phase: str
    message: str
    requested: str | None
    started_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    wait_until: datetime | None
    controller: str | None
    controller_gone: bool
    batches: list[BatchOut]
    skipped: list[dict[str, str]]
    info: InfoOut | None = None
    analysis: dict[str, Any] | None = None  # canary analysis: baseline, the latest judgement (docs/canary-analysis.md)


class HostRunOut(BaseModel):
    host: str
    address: str
    batch: int
    state: str
    step: str | None
    done_steps: list[str]
    target_version: str
    previous_version: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    attention: dict[str, str] | None


class JournalOut(Reads):
    id: int
    host: str | None
    step: str
    event: str
    detail: dict[str, Any]
    at: datetime


class PlanHostOut(BaseModel):
    name: str
    version: str | None
    layout: str | None
    healthy: bool | None
    problem: str | None


class PlanOut(BaseModel):
    app: str
    env: str
    version: str | None
    previous_version: str | None
    cluster_size: int
    estimate_seconds: float
    batches: list[BatchOut]
    skipped: list[dict[str, str]]
    attention: dict[str, str]
    problems: list[str]
    notes: list[str]
    hosts: list[PlanHostOut]
    approvals_needed: int = 0
    warnings: list[str] = Field(default_factory=list)
    blue_green: list[str] = Field(default_factory=list)  # a blue-green release's phases, as `graylift plan` says


@dataclass(frozen=True)
class RequestOut(ReleaseRequest):
    """A release request with the decisions taken on it."""

    approvals: list[Approval] = field(default_factory=list)


class StartedOut(BaseModel):
    release: ReleaseOut | None = None
    request: RequestOut | None = None


class AppEnvOut(BaseModel):
    app: str
    env: str
    current_version: str | None
    previous_version: str | None
    active_release: ReleaseOut | None
    waiting_requests: list[RequestOut]
    needs_person: str | None


class DeployedOut(Reads):
    version: str
    release_id: int
    at: datetime
    source: str


class AppEnvDetailOut(AppEnvOut):
    deployed: list[DeployedOut]
    bad_versions: dict[str, str]
    listed_versions: list[str] | None
    approvals_needed: int


class HostOut(Reads):
    name: str
    address: str
    port: int
    user: str
    group: str
    tags: dict[str, str]
    in_service: bool


class SurveyOut(BaseModel):
    host: str
    layout: str
    version: str | None
    sha256: str | None
    serving: str
    would: str


class UserOut(BaseModel):
    name: str
    disabled: bool
    has_password: bool
    created_at: datetime
    created_by: str
    grants: list[Grant]


@dataclass(frozen=True)
class NewTokenOut(Token):
    token: Annotated[str, Field(description="The token itself: shown this once, never stored.")]


class PolicyOut(Reads):
    app: str
    env: str
    approvals: int
    approve_rollbacks: bool


class WebhookOut(BaseModel):
    id: int
    name: str
    channel: str
    url: str = Field(description="Masked: robot URLs carry their token.")
    has_secret: bool
    app: str
    env: str
    events: list[str]
    template: str | None
    enabled: bool


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_before: int | None = Field(None, description="Pass as `before` for the next page; null on the last.")


# ---------------------------------------------------------------------------------------------- records -> answers
def page(items: list[Any], limit: int, ids: list[int]) -> dict[str, object]:
    return {"items": items, "next_before": ids[-1] if len(ids) == limit and ids else None}


def batches_of(plan: Plan) -> list[BatchOut]:
    return [BatchOut(index=b.index, label=b.label, canary=b.canary, hosts=list(b.hosts)) for b in plan.batches]


def release_out(rec: ReleaseRecord, *, gone: bool = False, info: ReleaseInfo | None = None,
                approvals: list[Approval] | None = None) -> ReleaseOut:
    plan = Plan.from_dict(rec.plan)
    return ReleaseOut(
        id=rec.id, app=rec.app, env=rec.env, kind=rec.kind.value, version=rec.version,
        previous_version=rec.previous_version, state=rec.state.value, direction=rec.direction.value, phase=rec.phase,
        message=rec.message, requested=rec.requested.value if rec.requested else None, started_by=rec.started_by,
        created_at=rec.created_at, updated_at=rec.updated_at, finished_at=rec.finished_at, wait_until=rec.wait_until,
        controller=rec.owner, controller_gone=gone, batches=batches_of(plan),
        skipped=[{"host": s.host, "reason": s.reason} for s in plan.skipped],
        analysis=rec.plan.get("analysis"),
        info=InfoOut(trigger=info.trigger, reason=info.reason, ticket=info.ticket, request_id=info.request_id,
                     override=info.override, approvals=approvals or []) if info else None)


def release_view(desk: Desk, rec: ReleaseRecord) -> ReleaseOut:
    """The release with how it was asked for and who approved it, and whether its controller is gone."""
    info, approvals = desk.origin(rec.id)
    return release_out(rec, gone=desk.gl.controller_gone(rec), info=info, approvals=approvals)


def releases_view(desk: Desk, recs: list[ReleaseRecord]) -> list[ReleaseOut]:
    infos = desk.info([r.id for r in recs])
    return [release_out(r, gone=desk.gl.controller_gone(r), info=infos.get(r.id)) for r in recs]


def host_run_out(run: HostRunRecord) -> HostRunOut:
    return HostRunOut(host=run.host, address=run.address, batch=run.batch, state=run.state.value, step=run.step,
                      done_steps=list(run.done_steps), target_version=run.target_version,
                      previous_version=run.previous_version, error=run.error, started_at=run.started_at,
                      finished_at=run.finished_at, attention=run.attention)


def plan_out(view: PlanView, approvals: int = 0, warnings: list[str] | None = None) -> PlanOut:
    hosts = []
    for name, report in view.report.hosts.items():
        found = report.found
        layout = None if found is None else "fresh" if found.fresh else f"current -> releases/{found.current_dir}"
        hosts.append(PlanHostOut(name=name, version=found.version if found else None, layout=layout,
                                 healthy=report.healthy.ok if report.healthy else None, problem=report.problem))
    return PlanOut(app=view.app, env=view.env, version=view.version, previous_version=view.previous_version,
                   cluster_size=view.plan.cluster_size, estimate_seconds=view.plan.estimate_seconds,
                   batches=batches_of(view.plan),
                   skipped=[{"host": s.host, "reason": s.reason} for s in view.plan.skipped],
                   attention={h: a.reason for h, a in view.attention.items()}, problems=view.report.problems,
                   notes=view.report.notes, hosts=hosts, approvals_needed=approvals, warnings=warnings or [],
                   blue_green=describe(view.plan) if view.plan.blue_green is not None else [])


def request_out(req: ReleaseRequest, approvals: list[Approval] | None = None) -> RequestOut:
    return RequestOut(**asdict(req), approvals=approvals or [])


def app_env_out(row: AppEnv, active: ReleaseOut | None) -> dict[str, Any]:
    return {"app": row.app, "env": row.env, "current_version": row.current, "previous_version": row.previous,
            "active_release": active, "waiting_requests": [request_out(r) for r in row.waiting],
            "needs_person": row.needs_person}


def user_out(u: User, grants: list[Grant]) -> UserOut:
    return UserOut(name=u.name, disabled=u.disabled, has_password=u.has_password, created_at=u.created_at,
                   created_by=u.created_by, grants=grants)


def webhook_out(w: Webhook) -> WebhookOut:
    return WebhookOut(id=w.id, name=w.name, channel=w.channel, url=w.url, has_secret=bool(w.secret), app=w.app,
                      env=w.env, events=list(w.events), template=w.template, enabled=w.enabled)
