"""The pre-stage phase with the real engine, store, steps and peer servers over folder hosts (graylift.testing).

Hosts listen on their own loopback address (127.0.0.N), so the peer servers are real one-file HTTP servers
and the receivers really download from them with curl and verify the sha256.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.adapters.transport.peer import MARKER, ShellPeer
from graylift.core.layout import SURVEY_ORDER, ReleaseDirs
from graylift.core.model import PrestageMode, Strategy
from graylift.core.state import HostState, ReleaseState
from graylift.ports import Transport
from tests.engine.conftest import DEPLOY, World

# a share of 1 byte: one host downloads from the repository, whatever the package's size; the others from peers
STRATEGY = Strategy(canary_group="beta", batch_size=2, prestage=PrestageMode.ALWAYS, prestage_repository_share=1)


def prestage_world(make_world: Callable[..., World], n: int = 6, strategy: Strategy = STRATEGY) -> World:
    world = make_world(n, strategy=strategy)
    world.hosts = [dataclasses.replace(h, address=f"127.0.0.{i + 10}") for i, h in enumerate(world.hosts)]
    world.fleet.runtime.peers = lambda transport: ShellPeer(transport, DEPLOY)
    return world


def entries(world: World, rid: int, step: str, event: str | None = None) -> list[Any]:
    return [e for e in world.store.journal_entries(rid) if e.step == step and (event is None or e.event == event)]


def no_peer_server_left(world: World) -> bool:
    """No peer server of this world's hosts runs (another test's, or a lab's, may: the check is machine-wide)."""
    pattern = f"{MARKER} {world.folders}/"
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode != 0


def test_every_host_is_staged_before_the_canary_and_peers_serve_it(make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    staged = entries(world, rid, "prestage", "staged")
    assert sorted(e.host for e in staged) == sorted(h.name for h in world.hosts)
    first_canary_step = min(e.id for e in world.store.journal_entries(rid) if e.step == "precheck")
    assert max(e.id for e in staged) < first_canary_step  # all staged before the canary's first step
    sources = [e.detail["source"] for e in staged]
    assert sources.count("repository") == 1  # one download from the repository, the rest from peers
    assert set(sources) - {"repository"} <= {h.name for h in world.hosts}
    for e in entries(world, rid, "stage", "done"):
        assert "reused" in e.detail, e.detail  # each host's stage step found it there
    summary = world.store.get_release(rid).plan["prestage"]
    assert summary["staged"] == 6 and summary["from_peers"] == 5 and not summary["failed"]
    served = {e.host for e in entries(world, rid, "prestage", "serving")}
    assert served == {e.host for e in entries(world, rid, "prestage", "server_stopped")}  # every server stopped
    assert no_peer_server_left(world)
    assert all(world.current(h.name) == "2.0.0" for h in world.hosts)


def test_a_package_small_for_the_repository_share_goes_to_every_host_from_the_repository_at_once(
        make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 6, dataclasses.replace(STRATEGY, prestage_repository_share=64 * 2**20))
    rid = world.start("1.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    staged = entries(world, rid, "prestage", "staged")
    assert sorted(e.host for e in staged) == sorted(h.name for h in world.hosts)
    assert {e.detail["source"] for e in staged} == {"repository"}
    assert entries(world, rid, "prestage", "serving") == []  # no peer server was started
    summary = world.store.get_release(rid).plan["prestage"]
    assert len(summary["from_repository"]) == 6 and summary["from_peers"] == 0


def test_auto_prestages_only_from_the_fleet_size(make_world: Callable[..., World]) -> None:
    auto = dataclasses.replace(STRATEGY, prestage=PrestageMode.AUTO, prestage_min_hosts=7)
    world = prestage_world(make_world, 6, auto)
    rid = world.start("1.0.0")
    world.drive(rid)
    assert entries(world, rid, "prestage") == [] and "prestage" not in world.store.get_release(rid).plan


class Died(BaseException):
    """The controller dies (as with kill -9: nothing after it runs on the hosts)."""


def test_a_controller_killed_mid_phase_does_not_restage_on_resume(make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 8)
    staged: list[str] = []
    dies = True

    class Dying(ShellDeployDir):
        async def stage(self, *args: Any, **kwargs: Any) -> None:
            await super().stage(*args, **kwargs)
            staged.append(self.host)
            if len(staged) == 3 and dies:
                raise Died

    def dying(transport: Transport) -> ShellDeployDir:
        return Dying(transport, DEPLOY)

    world.fleet.runtime.deploy_dirs = dying
    rid = world.start("1.0.0")
    with pytest.raises(Died):
        world.drive(rid)
    assert "prestage" not in world.store.get_release(rid).plan  # the phase was not marked done
    first, dies = list(staged), False
    staged.clear()
    rec = world.drive(rid)  # resumed by the next controller
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    present = {e.host for e in entries(world, rid, "prestage", "present")}
    # looked at first and found staged (also the last one, dead before its journal entry, and any transfer
    # that was under way on a host when the controller died), and not fetched again
    assert set(first) <= present and not present & set(staged)
    assert sorted([*present, *staged]) == sorted(h.name for h in world.hosts)
    assert no_peer_server_left(world)


def test_a_peer_that_serves_a_bad_package_is_refused_and_the_host_gets_it_elsewhere(
        make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 5)
    rid = world.start("1.0.0")

    class Corrupting(ShellPeer):
        async def serve(self, name: str, filename: str, **kwargs: Any) -> tuple[int, int]:
            if self.host == first_source:  # its archive is corrupted after it was verified
                path = world.folders / self.host / "releases" / name / filename
                path.write_bytes(path.read_bytes() + b"tampered")
            return await super().serve(name, filename, **kwargs)

    first_source = ""

    class Seed(ShellDeployDir):
        async def stage(self, *args: Any, **kwargs: Any) -> None:
            nonlocal first_source
            await super().stage(*args, **kwargs)
            first_source = first_source or self.host

    world.fleet.runtime.deploy_dirs = lambda transport: Seed(transport, DEPLOY)
    world.fleet.runtime.peers = lambda transport: Corrupting(transport, DEPLOY)
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    retries = entries(world, rid, "prestage", "retry")
    assert retries and all(e.detail["source"] == first_source for e in retries)
    assert all("sha256" in e.detail["error"] for e in retries)
    staged = entries(world, rid, "prestage", "staged")
    assert all(e.detail["source"] != first_source for e in staged if e.host != first_source)
    assert all(world.states(rid)[h.name] is HostState.DONE for h in world.hosts)
    assert no_peer_server_left(world)


def test_a_host_short_of_disk_is_refused_with_a_named_message(make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 5)

    class Full(ShellDeployDir):
        async def release(self, name: str) -> ReleaseDirs:
            dirs = await super().release(name)
            return dataclasses.replace(dirs, free_bytes=0) if self.host == "h3" and not dirs.present else dirs

    world.fleet.runtime.deploy_dirs = lambda transport: Full(transport, DEPLOY)
    rid = world.start("1.0.0")
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message  # not fatal: its stage step staged it in its turn
    [refused] = entries(world, rid, "prestage", "refused")
    assert refused.host == "h3" and refused.detail["error"].startswith("h3: 0 B free in the deploy dir")
    assert "needs" in refused.detail["error"]
    assert "h3" in world.store.get_release(rid).plan["prestage"]["refused"]


def test_the_token_never_reaches_the_journal(make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 5)
    tokens: list[str] = []

    class Dead(ShellPeer):
        async def serve(self, name: str, filename: str, **kwargs: Any) -> tuple[int, int]:
            tokens.append(kwargs["token"])
            port, pid = await super().serve(name, filename, **kwargs)
            await self.stop(pid)
            await asyncio.sleep(0.2)
            return port, pid  # a server that died: the receiver's curl fails, naming the URL

    world.fleet.runtime.peers = lambda transport: Dead(transport, DEPLOY)
    rid = world.start("1.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    assert entries(world, rid, "prestage", "retry")
    text = " ".join(str(e.detail) for e in world.store.journal_entries(rid))
    assert tokens and all(t not in text for t in tokens)


def test_each_host_is_looked_at_with_one_command_before_its_download(make_world: Callable[..., World]) -> None:
    """Check-then-act in one read: the release dir's state and the free space come back together."""
    world = prestage_world(make_world, 5)
    rid = world.start("1.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    for name, transport in world.fleet.transports.items():
        download = next(i for i, c in enumerate(transport.commands) if ".partial" in c)
        assert download == 1, (name, transport.commands[:download])


def test_a_package_the_repository_serves_to_every_host_is_looked_at_in_its_stages_first_command(
        make_world: Callable[..., World]) -> None:
    """No look of its own before a download the repository serves every host: the stage's first command
    looks (there already, room for it) and goes on; a host that had it is not fetched for, one without room is
    refused, named, before anything is fetched."""
    small = dataclasses.replace(STRATEGY, prestage_repository_share=64 * 2**20)
    world = prestage_world(make_world, 6, small)
    world.release("1.0.0")
    pkg = asyncio.run(world.fleet.package("2.0.0"))
    asyncio.run(ShellDeployDir(asyncio.run(world.fleet.connect(world.hosts[1])), DEPLOY).stage(
        pkg, "2.0.0", version="2.0.0", auth=None, replace=False, timeout=30))  # h2 has it already

    class Full(ShellDeployDir):  # h3's disk is full: its guard answers (tests/adapters/transport/test_deploy_dir.py)
        async def stage_if_needed(self, *args: Any, **kwargs: Any) -> ReleaseDirs | None:
            if self.host == "h3":
                await self.transport.run(f"test -d {DEPLOY}/releases/.2.0.0.partial && exit 1; true", timeout=5)
                return ReleaseDirs(False, free_bytes=0)
            return await super().stage_if_needed(*args, **kwargs)

    world.fleet.runtime.deploy_dirs = lambda transport: Full(transport, DEPLOY)
    for transport in world.fleet.transports.values():
        transport.commands.clear()
    rid = world.start("2.0.0")
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {e.host for e in entries(world, rid, "prestage", "present")} == {"h2"}
    [refused] = entries(world, rid, "prestage", "refused")
    assert refused.host == "h3" and refused.detail["error"].startswith("h3: ") and "needs" in refused.detail["error"]
    assert sorted(e.host for e in entries(world, rid, "prestage", "staged")) == ["h1", "h4", "h5", "h6"]
    for name, transport in world.fleet.transports.items():
        first_walk = next(i for i, c in enumerate(transport.commands) if SURVEY_ORDER in c)
        prestage = transport.commands[:first_walk]
        # an upload (the fakes' repository): the look with the fresh partial dir, then the check after the
        # copy; a host that has it, or no room: the look alone
        assert len(prestage) == (1 if name in ("h2", "h3") else 2), (name, prestage)
        assert ".partial" in prestage[0]
    assert world.current("h3") == "2.0.0"  # its stage step staged it in its turn


def test_killed_mid_phase_with_every_host_from_the_repository_nothing_is_fetched_twice(
        make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 8, dataclasses.replace(STRATEGY, prestage_repository_share=64 * 2**20))
    staged: list[str] = []
    dies = True

    class Dying(ShellDeployDir):
        async def stage_if_needed(self, *args: Any, **kwargs: Any) -> ReleaseDirs | None:
            found = await super().stage_if_needed(*args, **kwargs)
            if found is None:
                staged.append(self.host)
            if len(staged) == 3 and dies:
                raise Died
            return found

    world.fleet.runtime.deploy_dirs = lambda transport: Dying(transport, DEPLOY)
    rid = world.start("1.0.0")
    with pytest.raises(Died):
        world.drive(rid)
    assert "prestage" not in world.store.get_release(rid).plan
    first, dies = list(staged), False
    staged.clear()
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert not set(first) & set(staged)  # what the dead controller staged was found there, not fetched again
    present = {e.host for e in entries(world, rid, "prestage", "present")}
    assert set(first) <= present  # (and any download under way on a host when the controller died)
    assert set(staged) | present == {h.name for h in world.hosts} and not set(staged) & present
    assert all(world.states(rid)[h.name] is HostState.DONE for h in world.hosts)
