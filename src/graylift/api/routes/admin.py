"""Who you are; users, their grants and passwords, API tokens; approval policies and freeze windows; webhooks
and their deliveries; the audit log. Most need admin on ``* / *`` (the desk checks)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Request, Response

from graylift.api import answers as a
from graylift.api import schemas as s
from graylift.api.deps import ActorDep, desk_of
from graylift.auth import Action, Actor, Grant
from graylift.store.accounts import AuditEntry, Delivery, FreezeWindow, Policy, Token

router = APIRouter()


@router.get("/me", response_model=a.MeOut, tags=["users"])
def me(actor: ActorDep) -> Actor:
    return actor


# ---------------------------------------------------------------------------------------------- audit
@router.get("/audit", response_model=a.Page[AuditEntry], tags=["audit"])
def audit(request: Request, actor: ActorDep, who: s.ActorQuery = None, action: s.NameQuery = None,
          app: s.NameQuery = None, env: s.NameQuery = None, before: s.Before = None,
          limit: s.Limit = 100) -> dict[str, object]:
    entries = desk_of(request).audit_log(actor, actor=who, action=action, app=app, env=env, before_id=before,
                                         limit=limit)
    return a.page(entries, limit, [e.id for e in entries])


# ---------------------------------------------------------------------------------------------- users, tokens
@router.get("/users", response_model=list[a.UserOut], tags=["users"])
def users(request: Request, actor: ActorDep) -> list[a.UserOut]:
    return [a.user_out(u, grants) for u, grants in desk_of(request).users(actor)]


@router.post("/users", status_code=201, response_model=a.UserOut, tags=["users"])
def create_user(request: Request, actor: ActorDep, body: s.UserIn) -> a.UserOut:
    grants = [Grant(g.app, g.env, g.role) for g in body.grants]
    return a.user_out(desk_of(request).create_user(actor, body.name, body.password, grants), grants)


@router.put("/users/{name}/grants/{app}/{env}", status_code=204, tags=["users"])
def grant(request: Request, actor: ActorDep, name: s.UserPath, app: s.PatternPath, env: s.PatternPath,
          body: s.RoleIn) -> Response:
    desk_of(request).grant(actor, name, app, env, body.role)
    return Response(status_code=204)


@router.delete("/users/{name}/grants/{app}/{env}", tags=["users"])
def revoke_grant(request: Request, actor: ActorDep, name: s.UserPath, app: s.PatternPath,
                 env: s.PatternPath) -> dict[str, bool]:
    return {"removed": desk_of(request).revoke_grant(actor, name, app, env)}


@router.put("/users/{name}/password", status_code=204, tags=["users"])
def password(request: Request, actor: ActorDep, name: s.UserPath, body: s.PasswordIn) -> Response:
    desk_of(request).set_password(actor, name, body.password)
    return Response(status_code=204)


@router.post("/users/{name}/{what}", status_code=204, tags=["users"])
def enable(request: Request, actor: ActorDep, name: s.UserPath, what: Literal["enable", "disable"]) -> Response:
    desk_of(request).set_disabled(actor, name, what == "disable")
    return Response(status_code=204)


@router.get("/tokens", response_model=list[Token], tags=["users"])
def tokens(request: Request, actor: ActorDep, user: s.UserQuery = None) -> list[Token]:
    return desk_of(request).tokens(actor, user)


@router.post("/tokens", status_code=201, response_model=a.NewTokenOut, tags=["users"])
def create_token(request: Request, actor: ActorDep, body: s.TokenIn) -> a.NewTokenOut:
    """A new API token; the answer holds the token itself, this once (only its hash is kept)."""
    token, secret = desk_of(request).create_token(actor, body.user or actor.name, body.name, days=body.days)
    return a.NewTokenOut(**asdict(token), token=secret)


@router.delete("/tokens/{token_id}", response_model=Token, tags=["users"])
def revoke_token(request: Request, actor: ActorDep, token_id: s.IdPath) -> Token:
    return desk_of(request).revoke_token(actor, token_id)


# ---------------------------------------------------------------------------------------------- policies, freezes
@router.get("/policies", response_model=list[a.PolicyOut], tags=["policies"])
def policies(request: Request, actor: ActorDep) -> list[Policy]:
    return desk_of(request).policies(actor)


@router.put("/policies/{app}/{env}", response_model=a.PolicyOut, tags=["policies"])
def set_policy(request: Request, actor: ActorDep, app: s.PatternPath, env: s.NamePath, body: s.PolicyIn) -> Policy:
    """How many approvals (by people other than the requester) a release of app/env needs."""
    return desk_of(request).set_policy(actor, app, env, body.approvals, body.approve_rollbacks)


@router.get("/freezes", response_model=list[FreezeWindow], tags=["policies"])
def freezes(request: Request, actor: ActorDep) -> list[FreezeWindow]:
    return desk_of(request).freezes(actor)


@router.post("/freezes", status_code=201, response_model=FreezeWindow, tags=["policies"])
def add_freeze(request: Request, actor: ActorDep, body: s.FreezeIn) -> FreezeWindow:
    return desk_of(request).add_freeze(actor, body.app, body.env, body.starts_at, body.ends_at, body.reason)


@router.delete("/freezes/{freeze_id}", status_code=204, tags=["policies"])
def delete_freeze(request: Request, actor: ActorDep, freeze_id: s.IdPath) -> Response:
    desk_of(request).delete_freeze(actor, freeze_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------- webhooks
@router.get("/webhooks", response_model=list[a.WebhookOut], tags=["webhooks"])
def webhooks(request: Request, actor: ActorDep) -> list[a.WebhookOut]:
    return [a.webhook_out(w) for w in desk_of(request).webhooks(actor)]


@router.post("/webhooks", status_code=201, response_model=a.WebhookOut, tags=["webhooks"])
def add_webhook(request: Request, actor: ActorDep, body: s.WebhookIn) -> a.WebhookOut:
    desk = desk_of(request)
    hook = desk.add_webhook(actor, name=body.name, channel=body.channel, url=body.url, secret=body.secret,
                            app=body.app, env=body.env, events=list(body.events), template=body.template)
    return next(a.webhook_out(w) for w in desk.webhooks(actor) if w.id == hook.id)


@router.delete("/webhooks/{hook_id}", status_code=204, tags=["webhooks"])
def delete_webhook(request: Request, actor: ActorDep, hook_id: s.IdPath) -> Response:
    desk_of(request).delete_webhook(actor, hook_id)
    return Response(status_code=204)


@router.get("/webhooks/{hook_id}/deliveries", response_model=list[Delivery], tags=["webhooks"])
def deliveries(request: Request, actor: ActorDep, hook_id: s.IdPath, state: s.NameQuery = None,
               limit: s.Limit = 100) -> list[Delivery]:
    """The deliveries of one webhook, newest first, each with the payload it sent (or keeps trying to)."""
    desk = desk_of(request)
    desk.require(actor, Action.ADMINISTER, target=f"webhook #{hook_id}")
    desk.accounts.webhook(hook_id)
    return desk.accounts.deliveries(webhook_id=hook_id, state=state, limit=limit)
