"""The plain, frozen records the store returns: no session or row escapes the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from graylift.core.layout import Found as Found
from graylift.core.model import Host
from graylift.core.state import Direction, HostState, ReleaseKind, ReleaseState, Request

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True)
class ReleaseRecord:
    id: int
    app: str
    env: str
    kind: ReleaseKind
    version: str
    previous_version: str | None
    state: ReleaseState
    plan: dict[str, Any]
    config: dict[str, Any]
    cursor: int
    phase: str
    wait_until: datetime | None
    message: str
    requested: Request | None
    owner: str | None
    heartbeat_at: datetime | None
    started_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    lease_epoch: int = 0
    direction: Direction = Direction.FORWARD

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class HostRunRecord:
    release_id: int
    host: str
    address: str
    batch: int
    state: HostState
    step: str | None
    done_steps: tuple[str, ...]
    target_version: str
    previous_version: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    # The host as the inventory had it when the release started (port, user, group, tags): resume uses it.
    spec: Host | None = field(default=None, compare=False)
    found: Found | None = None
    target_dir: str | None = None
    attention: dict[str, str] | None = None  # backend -> why the host is not back in it

    @property
    def host_spec(self) -> Host:
        return self.spec or Host(self.host, self.address)


@dataclass(frozen=True)
class JournalEntry:
    id: int
    release_id: int
    host: str | None
    step: str
    event: str
    detail: dict[str, Any]
    at: datetime
    owner: str | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class DeployedVersion:
    app: str
    env: str
    version: str
    release_id: int
    at: datetime
    sha256: str | None = None
    source: str = "release"


@dataclass(frozen=True)
class HostHealth:
    """A host an earlier release left needing attention (until a release succeeds on it, or it is cleared)."""

    app: str
    env: str
    host: str
    state: str
    reason: str
    backends: dict[str, str]
    release_id: int
    since: datetime


def from_row(cls: type[R], row: Any, **converted: Any) -> R:
    """A ``cls`` whose fields are the ``row``'s values of the same names (a mapping or a SQLAlchemy row; columns
    the record does not carry are left out), but for those ``converted``."""
    values: Mapping[str, Any] = getattr(row, "_mapping", row)
    return cls(**{f.name: values[f.name] for f in fields(cls) if f.name not in converted}, **converted)


def host_to_json(host: Host) -> dict[str, Any]:
    return {**{f.name: getattr(host, f.name) for f in fields(Host)}, "tags": dict(host.tags)}


def host_from_json(data: dict[str, Any]) -> Host:
    return from_row(Host, data, port=int(data["port"]), tags=dict(data.get("tags") or {}),
                    in_service=bool(data["in_service"]))


def release_from_row(r: Any) -> ReleaseRecord:
    return from_row(ReleaseRecord, r, kind=ReleaseKind(r["kind"]), state=ReleaseState(r["state"]),
                    requested=Request(r["requested"]) if r["requested"] else None, direction=Direction(r["direction"]))


def host_run_from_row(r: Any) -> HostRunRecord:
    spec = r["host_spec"]
    return from_row(HostRunRecord, r, state=HostState(r["state"]), done_steps=tuple(r["done_steps"] or ()),
                    spec=host_from_json(spec) if spec else None,
                    found=Found.from_json(r["found"]) if r["found"] else None,
                    attention=dict(r["attention"]) if r["attention"] else None)


def journal_from_row(r: Any) -> JournalEntry:
    return from_row(JournalEntry, r, detail=dict(r["detail"] or {}))
