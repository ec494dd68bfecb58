"""Schema migrations, once per release, and the rollbacks they forbid.

An app with ``migration: {command: ...}`` runs that command on the controller once per release, after the
preflight and before the canary (the release is recorded first, so the migration's command, its declared kind
and its output are part of the release's journal). The command must be safe to run twice (Flyway, Liquibase
and Alembic all keep a history table): a controller that dies mid-migration has it run again by nobody, since
the release is then driven by a worker that only walks hosts; re-run it by hand if the journal has no
``migration done``.

Each release declares its migration ``expand`` (backward compatible: the previous version works with the new
schema, the first half of expand/contract) or ``contract`` (it removes what the previous version needs). A
rollback to a version older than a ``contract`` migration is refused with the releases it would cross, unless
given a reason, which is journaled on the rollback. A failed migration fails the release before any host is
touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graylift.core import template
from graylift.core.state import ReleaseKind, ReleaseState
from graylift.errors import CommandTimeout, GrayliftError, PlanError
from graylift.store import ReleaseRecord, Store

if TYPE_CHECKING:
    from graylift.config import AppConfig

EXPAND, CONTRACT = "expand", "contract"
OUTPUT_KEPT = 4000


class MigrationFailed(GrayliftError):
    """The release's schema migration failed; no host was touched."""


def declared_kind(cfg: AppConfig, declared: str | None) -> str | None:
    if cfg.migration is None:
        if declared is not None:
            raise PlanError(f"{declared} migration declared, but the app has no `migration` in its config")
        return None
    kind = declared or cfg.migration.default
    if kind not in (EXPAND, CONTRACT):
        raise PlanError(f"a migration is expand (backward compatible) or contract (not), got {kind!r}")
    return kind


async def run_migration(store: Store, cfg: AppConfig, rec: ReleaseRecord, kind: str) -> None:
    """Run the app's migration for ``rec`` on the controller; journal it; fail the release if it fails."""
    from graylift.adapters.transport.local import CONTROLLER, LocalTransport
    from graylift.config.app import MIGRATION_PLACEHOLDERS

    assert cfg.migration is not None
    command = template.render(cfg.migration.command, {
        "app": rec.app, "version": rec.version, "env": rec.env, "previous_version": rec.previous_version or ""},
        allowed=MIGRATION_PLACEHOLDERS, quote=True)
    store.journal(rec.id, None, "migration", "begin", {"command": command, "kind": kind})
    try:
        result = await LocalTransport(CONTROLLER).run(command, timeout=cfg.migration.timeout, check=False)
        status, output = result.exit_status, (result.stdout + result.stderr)[-OUTPUT_KEPT:]
    except CommandTimeout:
        status, output = -1, f"timed out after {cfg.migration.timeout:g}s (migration.timeout)"
    if status == 0:
        store.journal(rec.id, None, "migration", "done", {"kind": kind, "output": output})
        return
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    message = f"the {kind} migration failed (exit {status}): {last}; no host was touched"
    store.journal(rec.id, None, "migration", "failed", {"kind": kind, "exit": status, "output": output})
    store.transition(rec.id, ReleaseState.FAILED, message)
    raise MigrationFailed(f"release #{rec.id}: {message} (`graylift status {rec.id}` has its output)")


def contracts_crossed(store: Store, app: str, env: str, target: str) -> list[ReleaseRecord]:
    """Releases of app/env newer than the last one that put ``target`` in place whose contract migration ran."""
    releases = store.list_releases(app, env, limit=200)
    placed = [r.id for r in releases if r.version == target and r.kind is ReleaseKind.RELEASE
              and r.state is ReleaseState.SUCCEEDED]
    since = max(placed, default=0)
    crossed = []
    for rec in releases:
        if rec.id > since and rec.kind is ReleaseKind.RELEASE and any(
                e.step == "migration" and e.event == "done" and e.detail.get("kind") == CONTRACT
                for e in store.journal_entries(rec.id)):
            crossed.append(rec)
    return crossed


def check_rollback(store: Store, app: str, env: str, target: str, override: str | None) -> list[ReleaseRecord]:
    """Refuse going back to ``target`` across a contract migration unless ``override`` says why; returns the
    releases crossed (to journal with the override)."""
    crossed = contracts_crossed(store, app, env, target)
    if crossed and not (override and override.strip()):
        names = ", ".join(f"#{r.id} ({r.version})" for r in crossed)
        raise PlanError(f"rolling {app} ({env}) back to {target} crosses the contract migration of release "
                        f"{names}: {target} may not work with that schema. Restore the schema first (expand/"
                        f"contract: docs/migrations.md), or roll back anyway with --override-migration REASON")
    return crossed
