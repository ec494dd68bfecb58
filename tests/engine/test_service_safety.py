"""The service's side of the safety rules: preflight before any host is touched, a brownfield fleet's
version recorded by the first release, the survey, one-click rollback. Over the same fakes as the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graylift.core.state import HostState, ReleaseKind, ReleaseState
from graylift.errors import ConfigError, PreflightFailed
from graylift.service import Graylift
from tests.engine.conftest import APP, DEPLOY, ENV, World

CONFIG = """\
state: sqlite:///{db}
ssh: {{known_hosts: {root}/known_hosts}}
apps:
  {app}:
    package: {{type: tar.gz, local_dir: {artifacts}}}
    deploy: {{dir: {deploy}}}
    commands: {{start: "cat {{current}}/VERSION > {{deploy_dir}}/running", stop: "rm -f {{deploy_dir}}/running"}}
    health: {{command: "test -s {deploy}/running"}}
    strategy:
      canary: {{group: beta, count: 1}}
      batch: {{size: 2}}
"""


def make_service(w: World, tmp: Path) -> Graylift:
    config = tmp / "graylift.yaml"
    (tmp / "known_hosts").write_text("")
    config.write_text(CONFIG.format(db=tmp / "svc.db", root=tmp, app=APP, artifacts=w.repository.store.directory,
                                    deploy=DEPLOY))

    def fleet(snap: dict[str, Any], app: str, env: str, hosts: Any) -> Any:
        return w.fleet

    gl = Graylift(config, fleet=fleet)
    gl.store.replace_hosts(APP, ENV, w.hosts)
    w.store = gl.store  # the world's helpers read the service's database
    return gl


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world(8)


@pytest.fixture
def gl(world: World, tmp_path: Path) -> Graylift:
    return make_service(world, tmp_path)


def drive(gl: Graylift, release_id: int) -> Any:
    return asyncio.run(gl.engine().drive(release_id))


def test_preflight_refuses_with_every_problem_before_touching_any_host(world: World, gl: Graylift) -> None:
    world.switch.known = {"h1", "h3", "h4", "h6", "h7", "h8"}  # the LB has no entry for h2 and h5
    world.silencer.reachable = False
    with pytest.raises(PreflightFailed) as info:
        asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="test"))
    problems = info.value.problems
    assert any("h2" in p for p in problems) and any("h5" in p for p in problems)
    assert any("fake-alerts" in p for p in problems) and len(problems) == 3
    assert gl.store.list_releases(APP, ENV) == []
    assert world.switch.calls == [] and world.silencer.muted == {}
    assert all(not (world.folders / h.name / "releases").exists() for h in world.hosts)


def test_preflight_finds_a_missing_version_and_an_unreadable_layout(world: World, gl: Graylift) -> None:
    current = world.folders / "h4" / "current"
    current.parent.mkdir(parents=True, exist_ok=True)
    current.mkdir()
    view = asyncio.run(gl.plan(APP, ENV, "9.9.9"))
    assert any(p.startswith("repository:") and "9.9.9" in p for p in view.report.problems)
    assert any(p.startswith("h4:") and "is a directory, not a symlink" in p for p in view.report.problems)


def test_a_first_release_on_a_brownfield_fleet_records_what_it_ran_and_rolls_back_in_one_click(
        world: World, gl: Graylift) -> None:
    for host in world.hosts:
        world.install_by_script(host.name, "1.0.0")
    rec = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="test"))
    assert rec.previous_version == "1.0.0"  # the header reads 1.0.0 -> 2.0.0, not (none) -> 2.0.0
    assert [(d.version, d.source) for d in gl.store.deployed_versions(APP, ENV)] == [("1.0.0", "survey")]
    assert drive(gl, rec.id).state is ReleaseState.SUCCEEDED
    back = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="test"))
    assert back.kind is ReleaseKind.ROLLBACK and back.version == "1.0.0" and back.previous_version == "2.0.0"
    assert drive(gl, back.id).state is ReleaseState.SUCCEEDED
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}
    assert {world.running(h.name) for h in world.hosts} == {"1.0.0"}


def test_an_unhealthy_host_found_by_preflight_is_skipped_and_counted(world: World, gl: Graylift) -> None:
    asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="t"))
    drive(gl, gl.store.list_releases(APP, ENV)[0].id)
    (world.folders / "h6" / "running").unlink()
    view = asyncio.run(gl.plan(APP, ENV, "2.0.0"))
    assert [s.host for s in view.plan.skipped] == ["h6"] and "h6" not in view.plan.hosts
    assert view.report.problems == []


def test_survey_says_what_each_host_runs_and_what_a_release_would_do(world: World, gl: Graylift) -> None:
    for host in world.hosts[:4]:
        world.install_by_script(host.name, "1.0.0")
    (world.folders / "h2" / "running").unlink()
    rows = {r.host.name: r for r in asyncio.run(gl.survey(APP, ENV, "2.0.0"))}
    assert rows["h1"].layout == "current -> releases/1.0.0" and rows["h1"].version == "1.0.0"
    assert rows["h1"].would == "release 1.0.0 -> 2.0.0"
    assert rows["h2"].serving.startswith("no") and rows["h2"].would.startswith("skip: unhealthy")
    assert rows["h7"].layout == "fresh" and rows["h7"].would == "first install"
    assert world.switch.calls == []  # read-only


def test_hosts_clear_forgets_a_needs_attention_mark(world: World, gl: Graylift) -> None:
    rec = asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="t"))
    drive(gl, rec.id)
    gl.store.mark_needs_attention(APP, ENV, "h3", reason="x", backends={"lb": "down"}, release_id=rec.id)
    assert "h3" in asyncio.run(gl.plan(APP, ENV, "2.0.0")).attention
    assert gl.clear_host(APP, ENV, "h3") and not gl.clear_host(APP, ENV, "h3")
    assert asyncio.run(gl.plan(APP, ENV, "2.0.0")).attention == {}
    assert world.states(rec.id)["h3"] is HostState.DONE


@pytest.mark.parametrize("breakage", ["yaml", "other app", "absent"])
def test_a_new_rollback_works_from_the_last_release_when_the_config_does_not_load(
        world: World, gl: Graylift, tmp_path: Path, breakage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for host in world.hosts:
        world.install_by_script(host.name, "1.0.0")
    rec = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="test"))
    assert drive(gl, rec.id).state is ReleaseState.SUCCEEDED
    config = tmp_path / "graylift.yaml"
    if breakage == "yaml":
        config.write_text(config.read_text() + "  other: [unclosed\n")
    elif breakage == "other app":
        config.write_text(config.read_text() + "  other:\n    deploy: {dir: /srv/other}\n    helth: {}\n")
    else:
        monkeypatch.setenv("GRAYLIFT_DB", f"sqlite:///{tmp_path / 'svc.db'}")
        config.unlink()
    fresh = Graylift(config, fleet=lambda snap, app, env, hosts: world.fleet)  # as a new `graylift rollback`
    with pytest.raises(ConfigError):
        asyncio.run(fresh.start_release(APP, ENV, "2.0.1", started_by="test"))  # a release still needs it
    back = asyncio.run(fresh.start_rollback(APP, ENV, to_version=None, started_by="test"))
    assert fresh.config_problem is not None  # the CLI says it works from the state database alone
    assert back.kind is ReleaseKind.ROLLBACK and back.version == "1.0.0" and back.config == rec.config
    assert asyncio.run(fresh.engine().drive(back.id)).state is ReleaseState.SUCCEEDED
    assert {world.running(h.name) for h in world.hosts} == {"1.0.0"}
