"""Schema migrations through the service over the fakes: once per release before any host, recorded with its
output; a failing one fails the release untouched; a rollback across a contract migration is refused unless
given a reason, which is journaled. (The lab test with PostgreSQL: tests/e2e/test_migrations_lab.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.errors import PlanError
from graylift.service import Graylift
from graylift.service.migrations import MigrationFailed
from tests.engine.conftest import APP, ENV
from tests.engine.test_gates import with_windows
from tests.engine.test_service_safety import make_service


def with_migration(make_world: Any, tmp_path: Path, command: str) -> Graylift:
    gl = make_service(make_world(6), tmp_path)
    return with_windows(gl, "[]", f"    migration: {{command: '{command}'}}\n")


def released(gl: Graylift, version: str, **kw: Any) -> int:
    rec = asyncio.run(gl.start_release(APP, ENV, version, started_by="ann", **kw))
    assert asyncio.run(gl.engine().drive(rec.id)).state is ReleaseState.SUCCEEDED
    return rec.id


def migration_entries(gl: Graylift, rid: int) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.detail) for e in gl.store.journal_entries(rid) if e.step == "migration"]


def test_a_migration_runs_once_per_release_before_any_host_and_is_recorded(make_world: Any, tmp_path: Path) -> None:
    log = tmp_path / "migrations.log"
    command = f"echo migrate {{app}} {{previous_version}} to {{version}} | tee -a {log}"
    gl = with_migration(make_world, tmp_path, command)
    rid = released(gl, "1.0.0")
    second = released(gl, "2.0.0", migration="contract")
    assert log.read_text().splitlines() == ["migrate demo  to 1.0.0", "migrate demo 1.0.0 to 2.0.0"]
    entries = migration_entries(gl, second)
    assert [e for e, _ in entries] == ["begin", "done"]
    assert entries[0][1]["kind"] == "contract" and entries[1][1]["output"] == "migrate demo 1.0.0 to 2.0.0\n"
    assert migration_entries(gl, rid)[1][1]["kind"] == "expand"  # the config's default
    journal = gl.store.journal_entries(second)
    first_host_step = next(e.id for e in journal if e.host is not None)
    assert max(e.id for e in journal if e.step == "migration") < first_host_step  # before the canary


def test_a_rollback_across_a_contract_migration_needs_a_reason(make_world: Any, tmp_path: Path) -> None:
    gl = with_migration(make_world, tmp_path, "true")
    released(gl, "1.0.0")
    contract = released(gl, "2.0.0", migration="contract")
    with pytest.raises(PlanError, match=rf"back to 1\.0\.0 crosses the contract migration of release #{contract} "
                                        r"\(2\.0\.0\).*--override-migration REASON"):
        asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="ann"))
    back = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="ann",
                                         override_migration="schema restored from the 02:00 backup"))
    assert migration_entries(gl, back.id) == [("override", {"reason": "schema restored from the 02:00 backup",
                                                            "by": "ann", "crossed": [contract]})]
    assert asyncio.run(gl.engine().drive(back.id)).state is ReleaseState.SUCCEEDED


def test_an_expand_migration_does_not_hold_a_rollback_and_a_running_contract_one_does(
        make_world: Any, tmp_path: Path) -> None:
    gl = with_migration(make_world, tmp_path, "true")
    released(gl, "1.0.0")
    released(gl, "2.0.0", migration="expand")
    back = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="ann"))
    assert asyncio.run(gl.engine().drive(back.id)).state is ReleaseState.SUCCEEDED
    running = asyncio.run(gl.start_release(APP, ENV, "4.0.0", started_by="ann", migration="contract"))
    with pytest.raises(PlanError, match="crosses the contract migration"):  # mid-release: the same rule
        asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="ann"))
    assert gl.store.get_release(running.id).requested is None


def test_a_failed_migration_fails_the_release_before_any_host(make_world: Any, tmp_path: Path) -> None:
    gl = with_migration(make_world, tmp_path, "echo applying V2; echo ERROR: column exists >&2; exit 3")
    with pytest.raises(MigrationFailed, match=r"the expand migration failed \(exit 3\): ERROR: column exists; "
                                              "no host was touched"):
        asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="ann"))
    [rec] = gl.store.list_releases(APP, ENV)
    assert rec.state is ReleaseState.FAILED
    assert {r.state for r in gl.store.host_runs(rec.id)} == {HostState.PENDING}
    assert migration_entries(gl, rec.id)[-1][1]["exit"] == 3


def test_declaring_a_migration_for_an_app_without_one_is_refused(make_world: Any, tmp_path: Path) -> None:
    gl = make_service(make_world(6), tmp_path)
    with pytest.raises(PlanError, match="contract migration declared, but the app has no `migration`"):
        asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="ann", migration="contract"))
