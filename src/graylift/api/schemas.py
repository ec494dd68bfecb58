"""What the API takes: the bodies (they make the OpenAPI document's request schemas), the path and query
parameters, and the patterns of the names in them (the console's forms and links use the same)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, Field, StringConstraints

from graylift.auth import Role

NAME_PATTERN = r"^[A-Za-z0-9._+-]{1,128}$"
NAME_OR_ANY_PATTERN = r"^(\*|[A-Za-z0-9._+-]{1,128})$"
USER_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Pattern = Annotated[str, StringConstraints(pattern=NAME_OR_ANY_PATTERN)]
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._+~-]{1,128}$")]
Text = Annotated[str, StringConstraints(max_length=2000)]
Short = Annotated[str, StringConstraints(max_length=128)]
UserName = Annotated[str, StringConstraints(pattern=USER_PATTERN)]
Channel = Literal["dingtalk", "feishu", "wecom", "slack", "generic"]
ControlAction = Literal["promote", "pause", "resume", "retry", "abort", "rollback"]

# ---------------------------------------------------------------------------------------------- parameters
NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
PatternPath = Annotated[str, Path(pattern=NAME_OR_ANY_PATTERN)]
UserPath = Annotated[str, Path(pattern=USER_PATTERN)]
IdPath = Annotated[int, Path(ge=1, le=2**62)]
NameQuery = Annotated[str | None, Query(pattern=NAME_PATTERN)]
UserQuery = Annotated[str | None, Query(pattern=USER_PATTERN)]
ActorQuery = Annotated[str | None, Query(alias="actor", max_length=64)]
AfterQuery = Annotated[int | None, Query(ge=0, le=2**62)]
Before = Annotated[int | None, Query(ge=1, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=500)]


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
