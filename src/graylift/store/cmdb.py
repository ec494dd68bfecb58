"""The built-in CMDB in the state database: host lists, host health, and the versions each app/env ran."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from graylift.core.model import Host
from graylift.errors import UsageError
from graylift.store import tables as t
from graylift.store.base import StoreBase
from graylift.store.records import DeployedVersion, HostHealth


class CmdbStore(StoreBase):
    def app_envs(self) -> dict[str, set[str]]:
        """Every app/env the database knows of (from host lists and releases): app -> its envs."""
        query = sa.union(sa.select(t.hosts.c.app, t.hosts.c.env), sa.select(t.releases.c.app, t.releases.c.env))
        found: dict[str, set[str]] = {}
        with self._read() as conn:
            for app, env in conn.execute(query):
                found.setdefault(app, set()).add(env)
        return found

    # ------------------------------------------------------------------ host lists
    def replace_hosts(self, app: str, env: str, hosts: list[Host]) -> None:
        """Make ``hosts`` the whole host list of app/env (an import)."""
        seen: set[str] = set()
        for host in hosts:
            if host.name in seen:
                raise UsageError(f"host {host.name} appears twice in the list for {app} ({env})")
            seen.add(host.name)
        with self._write() as conn:
            conn.execute(sa.delete(t.hosts).where(t.hosts.c.app == app, t.hosts.c.env == env))
            if hosts:
                conn.execute(sa.insert(t.hosts), [_host_row(app, env, h) for h in hosts])

    def upsert_host(self, app: str, env: str, host: Host) -> None:
        row = _host_row(app, env, host)
        with self._write() as conn:
            key = _host_key(app, env, host.name)
            done = conn.execute(
                sa.update(t.hosts).where(*key).values({k: v for k, v in row.items() if k not in ("app", "env", "name")})
            ).rowcount
            if not done:
                conn.execute(sa.insert(t.hosts).values(row))

    def remove_host(self, app: str, env: str, name: str) -> None:
        with self._write() as conn:
            if not conn.execute(sa.delete(t.hosts).where(*_host_key(app, env, name))).rowcount:
                raise UsageError(_no_host(app, env, name))

    def list_hosts(self, app: str, env: str) -> list[Host]:
        query = sa.select(t.hosts).where(t.hosts.c.app == app, t.hosts.c.env == env).order_by(t.hosts.c.name)
        with self._read() as conn:
            return [_host_from_row(r) for r in conn.execute(query).mappings()]

    def set_in_service(self, app: str, env: str, name: str, in_service: bool) -> None:
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.hosts).where(*_host_key(app, env, name)).values(in_service=in_service)
            ).rowcount
            if not done:
                raise UsageError(_no_host(app, env, name))

    def list_app_envs(self) -> list[tuple[str, str, int]]:
        """Every (app, env, host count) in the built-in inventory, sorted."""
        query = (
            sa.select(t.hosts.c.app, t.hosts.c.env, sa.func.count())
            .group_by(t.hosts.c.app, t.hosts.c.env)
            .order_by(t.hosts.c.app, t.hosts.c.env)
        )
        with self._read() as conn:
            return [(a, e, int(n)) for a, e, n in conn.execute(query)]

    # ------------------------------------------------------------------ host health
    def mark_needs_attention(self, app: str, env: str, host: str, *, reason: str, backends: dict[str, str],
                             release_id: int) -> None:
        """Record that a release left ``host`` needing attention: later releases count it as out."""
        key = (t.host_health.c.app == app, t.host_health.c.env == env, t.host_health.c.host == host)
        values = {"state": "needs_attention", "reason": reason, "backends": backends, "release_id": release_id,
                  "since": self._now()}
        with self._write() as conn:
            if not conn.execute(sa.update(t.host_health).where(*key).values(values)).rowcount:
                conn.execute(sa.insert(t.host_health).values(app=app, env=env, host=host, **values))

    def clear_host_health(self, app: str, env: str, host: str) -> bool:
        """Forget a host's needs-attention mark (a release succeeded on it, or `graylift hosts clear`)."""
        with self._write() as conn:
            return self._clear_host_health(conn, app, env, host)

    def _clear_host_health(self, conn: sa.Connection, app: str, env: str, host: str) -> bool:
        key = (t.host_health.c.app == app, t.host_health.c.env == env, t.host_health.c.host == host)
        return bool(conn.execute(sa.delete(t.host_health).where(*key)).rowcount)

    def host_health(self, app: str, env: str) -> dict[str, HostHealth]:
        query = sa.select(t.host_health).where(t.host_health.c.app == app, t.host_health.c.env == env)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return {r["host"]: HostHealth(r["app"], r["env"], r["host"], r["state"], r["reason"],
                                      dict(r["backends"] or {}), r["release_id"], r["since"]) for r in rows}

    # ------------------------------------------------------------------ versions
    def record_deployed(self, app: str, env: str, version: str, release_id: int, *, sha256: str | None = None,
                        source: str = "release") -> None:
        with self._write() as conn:
            conn.execute(sa.insert(t.deployed_versions).values(
                app=app, env=env, version=version, release_id=release_id, at=self._now(), sha256=sha256,
                source=source))

    def deployed_versions(self, app: str, env: str) -> list[DeployedVersion]:
        """Versions that went live for app/env, newest first."""
        c = t.deployed_versions.c
        query = sa.select(t.deployed_versions).where(c.app == app, c.env == env).order_by(c.id.desc())
        with self._read() as conn:
            return [DeployedVersion(app=r["app"], env=r["env"], version=r["version"], release_id=r["release_id"],
                                    at=r["at"], sha256=r["sha256"], source=r["source"])
                    for r in conn.execute(query).mappings()]

    def current_version(self, app: str, env: str) -> str | None:
        """The version that went live last (one row, however long the history)."""
        c = t.deployed_versions.c
        query = sa.select(c.version).where(c.app == app, c.env == env).order_by(c.id.desc()).limit(1)
        with self._read() as conn:
            return conn.execute(query).scalar()

    def deployed_sha256(self, app: str, env: str, version: str) -> str | None:
        """The sha256 recorded the last time ``version`` went live with one (what a rollback to it expects)."""
        c = t.deployed_versions.c
        query = (sa.select(c.sha256).where(c.app == app, c.env == env, c.version == version, c.sha256.is_not(None))
                 .order_by(c.id.desc()).limit(1))
        with self._read() as conn:
            return conn.execute(query).scalar()

    def mark_bad(self, app: str, env: str, version: str, *, release_id: int, reason: str) -> None:
        """A version a rollback left: no later rollback, resume or retry goes to it."""
        c = t.bad_versions.c
        with self._write() as conn:
            exists = conn.execute(sa.select(c.version).where(c.app == app, c.env == env, c.version == version))
            if exists.first() is None:
                conn.execute(sa.insert(t.bad_versions).values(app=app, env=env, version=version,
                                                              release_id=release_id, reason=reason, at=self._now()))

    def bad_versions(self, app: str, env: str) -> dict[str, str]:
        """version -> why it is bad."""
        c = t.bad_versions.c
        with self._read() as conn:
            return {r.version: r.reason for r in conn.execute(
                sa.select(c.version, c.reason).where(c.app == app, c.env == env))}


def _no_host(app: str, env: str, name: str) -> str:
    return f"host {name} is not in the inventory of {app} ({env}); `graylift hosts list --app {app} --env {env}`"


def _host_key(app: str, env: str, name: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (t.hosts.c.app == app, t.hosts.c.env == env, t.hosts.c.name == name)


def _host_row(app: str, env: str, host: Host) -> dict[str, Any]:
    return {"app": app, "env": env, "name": host.name, "address": host.address, "port": host.port,
            "ssh_user": host.user, "host_group": host.group, "tags": dict(host.tags), "in_service": host.in_service}


def _host_from_row(r: Any) -> Host:
    return Host(name=r["name"], address=r["address"], port=r["port"], user=r["ssh_user"], group=r["host_group"],
                tags=dict(r["tags"] or {}), in_service=bool(r["in_service"]))
