"""The plain, frozen records the store returns: no session or row escapes the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graylift.core.layout import Found as Found
from graylift.core.model import Host
from graylift.core.state import Direction, HostState, ReleaseKind, ReleaseState, Request


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


def host_to_json(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "group": host.group,
        "tags": dict(host.tags),
        "in_service": host.in_service,
    }


def host_from_json(data: dict[str, Any]) -> Host:
    return Host(
        name=data["name"],
        address=data["address"],
        port=int(data["port"]),
        user=data["user"],
        group=data["group"],
        tags=dict(data.get("tags") or {}),
        in_service=bool(data["in_service"]),
    )


def release_from_row(r: Any) -> ReleaseRecord:
    return ReleaseRecord(
        id=r["id"],
        app=r["app"],
        env=r["env"],
        kind=ReleaseKind(r["kind"]),
        version=r["version"],
        previous_version=r["previous_version"],
        state=ReleaseState(r["state"]),
        plan=r["plan"],
        config=r["config"],
        cursor=r["cursor"],
        phase=r["phase"],
        wait_until=r["wait_until"],
        message=r["message"],
        requested=Request(r["requested"]) if r["requested"] else None,
        owner=r["owner"],
        heartbeat_at=r["heartbeat_at"],
        started_by=r["started_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        finished_at=r["finished_at"],
        lease_epoch=r["lease_epoch"],
        direction=Direction(r["direction"]),
    )


def host_run_from_row(r: Any) -> HostRunRecord:
    spec = r["host_spec"]
    return HostRunRecord(
        release_id=r["release_id"],
        host=r["host"],
        address=r["address"],
        batch=r["batch"],
        state=HostState(r["state"]),
        step=r["step"],
        done_steps=tuple(r["done_steps"] or ()),
        target_version=r["target_version"],
        previous_version=r["previous_version"],
        error=r["error"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        spec=host_from_json(spec) if spec else None,
        found=Found.from_json(r["found"]) if r["found"] else None,
        target_dir=r["target_dir"],
        attention=dict(r["attention"]) if r["attention"] else None,
    )


def journal_from_row(r: Any) -> JournalEntry:
    return JournalEntry(id=r["id"], release_id=r["release_id"], host=r["host"], step=r["step"], event=r["event"],
                        detail=dict(r["detail"] or {}), at=r["at"], owner=r["owner"], epoch=r["epoch"])
