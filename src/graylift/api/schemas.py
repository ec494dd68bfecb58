"""The API's bodies and answers (they make the OpenAPI document), and the records -> answers mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, StringConstraints

from graylift.auth import AppEnv, Role
from graylift.core.plan import Plan
from graylift.service import HostRunRecord, JournalEntry, PlanView, ReleaseRecord
from graylift.store.accounts import (
    Approval,
    AuditEntry,
    Delivery,
    FreezeWindow,
    Policy,
    ReleaseInfo,
    ReleaseRequest,
    Token,
    Webhook,
)

NAME_PATTERN = r"^[A-Za-z0-9._+-]{1,128}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Pattern = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9._+-]{1,128})$")]
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._+~-]{1,128}$")]
Text = Annotated[str, StringConstraints(max_length=2000)]
Short = Annotated[str, StringConstraints(max_length=128)]
UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
Channel = Literal["dingtalk", "feishu", "wecom", "slack", "generic"]
ControlAction = Literal["promote", "pause", "resume", "retry", "abort", "rollback"]


class Strict(BaseModel):
    model_config = {"extra": "forbid"}


# ---------------------------------------------------------------------------------------------- bodies
class PlanIn(Strict):
    app: Name
    env: Name
    version: Version | None = None


class ReleaseIn(Strict):
    app: Name
    env: Name
    version: Version
    reason: Text = ""
    ticket: Short = ""
    override: Text | None = Field(None, description="An admin's reason to release inside a freeze window.")


class RollbackIn(Strict):
    to: Version | None = Field(None, description="A version that went live before; default: the last good one.")
    reason: Text = ""
    ticket: Short = ""


class ControlIn(Strict):
    reason: Text = ""


class DecisionIn(Strict):
    comment: Text = ""


class HostIn(Strict):
    name: Name
    address: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    port: int = Field(22, ge=1, le=65535)
    user: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = "root"
    group: Annotated[str, StringConstraints(max_length=128)] = ""
    tags: dict[Short, Short] = Field(default_factory=dict)
    in_service: bool = True


class HostsIn(Strict):
    hosts: list[HostIn] | None = Field(None, max_length=10000)
    inventory: Annotated[str, StringConstraints(max_length=1_000_000)] | None = Field(
        None, description="A YAML, Ansible INI or Ansible YAML inventory, as `graylift hosts import` reads.")
    format: Literal["yaml", "ini"] = "yaml"


class MaintenanceIn(Strict):
    in_service: bool


class SurveyIn(Strict):
    version: Version | None = None


class GrantIn(Strict):
    app: Pattern = "*"
    env: Pattern = "*"
    role: Role


class UserIn(Strict):
    name: UserName
    password: Annotated[str, StringConstraints(max_length=200)] | None = None
    grants: list[GrantIn] = Field(default_factory=list, max_length=100)


class PasswordIn(Strict):
    password: Annotated[str, StringConstraints(max_length=200)]


class RoleIn(Strict):
    role: Role


class TokenIn(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,128}$")]
    user: UserName | None = Field(None, description="Another user's (admins only); default: your own.")
    days: int | None = Field(None, ge=1, le=3650)


class PolicyIn(Strict):
    approvals: int = Field(ge=0, le=10)
    approve_rollbacks: bool = False


class FreezeIn(Strict):
    app: Pattern = "*"
    env: Pattern = "*"
    starts_at: datetime
    ends_at: datetime
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class WebhookIn(Strict):
    name: UserName
    channel: Channel
    url: Annotated[str, StringConstraints(min_length=8, max_length=2000)]
    secret: Annotated[str, StringConstraints(max_length=500)] | None = None
    app: Pattern = "*"
    env: Pattern = "*"
    events: list[Short] = Field(default_factory=list, max_length=20)
    template: Text | None = None


# ---------------------------------------------------------------------------------------------- answers
class GrantOut(BaseModel):
    app: str
    env: str
    role: Role


class MeOut(BaseModel):
    name: str
    via: str
    grants: list[GrantOut]


class ApprovalOut(BaseModel):
    user: str
    decision: str
    comment: str
    at: datetime


class InfoOut(BaseModel):
    trigger: str
    reason: str
    ticket: str
    request_id: int | None
    override: str | None
    approvals: list[ApprovalOut] = Field(default_factory=list)


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


class JournalOut(BaseModel):
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


class RequestOut(BaseModel):
    id: int
    app: str
    env: str
    kind: str
    version: str | None
    reason: str
    ticket: str
    trigger: str
    requested_by: str
    approvals_needed: int
    state: str
    message: str
    release_id: int | None
    created_at: datetime
    expires_at: datetime
    approvals: list[ApprovalOut] = Field(default_factory=list)


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


class DeployedOut(BaseModel):
    version: str
    release_id: int
    at: datetime
    source: str


class AppEnvDetailOut(AppEnvOut):
    deployed: list[DeployedOut]
    bad_versions: dict[str, str]
    listed_versions: list[str] | None
    approvals_needed: int


class HostOut(BaseModel):
    name: str
    address: str
    port: int
    user: str
    group: str
    tags: dict[str, str]
    in_service: bool


class VisitOut(BaseModel):
    release_id: int
    kind: str
    version: str
    release_state: str
    state: str
    step: str | None
    target_version: str
    previous_version: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class SurveyOut(BaseModel):
    host: str
    layout: str
    version: str | None
    sha256: str | None
    serving: str
    would: str


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    via: str
    source: str
    action: str
    target: str
    app: str | None
    env: str | None
    outcome: str
    detail: dict[str, Any]


class UserOut(BaseModel):
    name: str
    disabled: bool
    has_password: bool
    created_at: datetime
    created_by: str
    grants: list[GrantOut]


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The token itself: shown this once, never stored.")


class PolicyOut(BaseModel):
    app: str
    env: str
    approvals: int
    approve_rollbacks: bool


class FreezeOut(BaseModel):
    id: int
    app: str
    env: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str


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


class DeliveryOut(BaseModel):
    id: int
    event: str
    release_id: int | None
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_before: int | None = Field(None, description="Pass as `before` for the next page; null on the last.")


# ---------------------------------------------------------------------------------------------- mapping
def batches_of(plan: Plan) -> list[BatchOut]:
    return [BatchOut(index=b.index, label=b.label, canary=b.canary, hosts=list(b.hosts)) for b in plan.batches]


def approvals_out(approvals: list[Approval]) -> list[ApprovalOut]:
    return [ApprovalOut(user=a.user, decision=a.decision, comment=a.comment, at=a.at) for a in approvals]


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
        info=InfoOut(trigger=info.trigger, reason=info.reason, ticket=info.ticket, request_id=info.request_id,
                     override=info.override, approvals=approvals_out(approvals or [])) if info else None)


def host_run_out(run: HostRunRecord) -> HostRunOut:
    return HostRunOut(host=run.host, address=run.address, batch=run.batch, state=run.state.value, step=run.step,
                      done_steps=list(run.done_steps), target_version=run.target_version,
                      previous_version=run.previous_version, error=run.error, started_at=run.started_at,
                      finished_at=run.finished_at, attention=run.attention)


def journal_out(entry: JournalEntry) -> JournalOut:
    return JournalOut(id=entry.id, host=entry.host, step=entry.step, event=entry.event, detail=entry.detail,
                      at=entry.at)


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
                   notes=view.report.notes, hosts=hosts, approvals_needed=approvals, warnings=warnings or [])


def request_out(req: ReleaseRequest, approvals: list[Approval] | None = None) -> RequestOut:
    return RequestOut(id=req.id, app=req.app, env=req.env, kind=req.kind, version=req.version, reason=req.reason,
                      ticket=req.ticket, trigger=req.trigger, requested_by=req.requested_by,
                      approvals_needed=req.approvals_needed, state=req.state, message=req.message,
                      release_id=req.release_id, created_at=req.created_at, expires_at=req.expires_at,
                      approvals=approvals_out(approvals or []))


def app_env_out(row: AppEnv, active: ReleaseOut | None) -> dict[str, Any]:
    return {"app": row.app, "env": row.env, "current_version": row.current, "previous_version": row.previous,
            "active_release": active, "waiting_requests": [request_out(r) for r in row.waiting],
            "needs_person": row.needs_person}


def audit_out(e: AuditEntry) -> AuditOut:
    return AuditOut(id=e.id, at=e.at, actor=e.actor, via=e.via, source=e.source, action=e.action, target=e.target,
                    app=e.app, env=e.env, outcome=e.outcome, detail=e.detail)


def token_out(t: Token) -> TokenOut:
    return TokenOut(id=t.id, user=t.user, name=t.name, prefix=t.prefix, created_at=t.created_at,
                    expires_at=t.expires_at, last_used_at=t.last_used_at, revoked_at=t.revoked_at)


def policy_out(p: Policy) -> PolicyOut:
    return PolicyOut(app=p.app, env=p.env, approvals=p.approvals, approve_rollbacks=p.approve_rollbacks)


def freeze_out(f: FreezeWindow) -> FreezeOut:
    return FreezeOut(id=f.id, app=f.app, env=f.env, starts_at=f.starts_at, ends_at=f.ends_at, reason=f.reason,
                     created_by=f.created_by)


def webhook_out(w: Webhook) -> WebhookOut:
    return WebhookOut(id=w.id, name=w.name, channel=w.channel, url=w.url, has_secret=bool(w.secret), app=w.app,
                      env=w.env, events=list(w.events), template=w.template, enabled=w.enabled)


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(id=d.id, event=d.event, release_id=d.release_id, state=d.state, attempts=d.attempts,
                       next_attempt_at=d.next_attempt_at, last_error=d.last_error, created_at=d.created_at,
                       sent_at=d.sent_at)
