"""The simulated fleet: hosts as data, and the fakes of every port graylift drives them through.

A :class:`SimHost` is what a real host would hold: release dirs (with the sha256 and version graylift records),
the ``current`` link, the app process (which version it runs, if any), reachability. The fakes change it the way
the real adapters change a real host, and every operation can be made to fail, hang or lie by a :class:`Faults`
entry, so the engine meets each failure at each point. Every operation is an await point (a controller can be
killed there) and checks the world's invariants that must hold at every instant (the 50% rule).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from graylift.core.fence import INPUT_END, MARK, REFUSED_EXIT, unwrap
from graylift.core.layout import Found, ReleaseDirs
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import (
    ArtifactError,
    CommandTimeout,
    HostUnreachable,
    RemoteCommandFailed,
    SilencerError,
    TrafficError,
)
from graylift.ports import CommandResult, ProbeResult, Transport
from graylift.sim import shell
from graylift.testing import FakeSilencer, FakeSwitch

APP = "sim"
HANG_SECONDS = 30.0  # how long a hung backend call takes before it times out (as the real adapters' timeouts)


@dataclass
class SimHost:
    name: str
    releases: dict[str, tuple[str, str]] = field(default_factory=dict)  # dir -> (sha256, version), oldest first
    current: str | None = None
    running: str | None = None  # the version the app process runs (None: stopped)
    served: bool = False  # it has served before (a fresh host out of service takes nothing from the cluster)
    reachable: bool = True
    crashes_on_start: bool = False  # the app dies right after it starts (whatever its version)
    fence: tuple[str, int] | None = None  # the last lease token that touched it (database, epoch): core/fence.py

    @property
    def serving_version(self) -> str | None:
        return self.running

    @property
    def newest_first(self) -> tuple[str, ...]:
        """The release dirs newest first (they were staged in the order ``releases`` holds them)."""
        return tuple(reversed(self.releases))

    def found(self) -> Found:
        releases: dict[str, str | None] = {d: sha for d, (sha, _) in self.releases.items()}
        versions = {d: v for d, (_, v) in self.releases.items() if v != d}
        if self.current is None:
            return Found("fresh", releases=releases, versions=versions, newest_first=self.newest_first)
        sha, version = self.releases[self.current]
        return Found("release", self.current, version, sha, releases, versions, self.newest_first)


@dataclass
class Faults:
    """Failures to inject: (operation, host or '*') -> how many more times it fails ('hang' for commands).

    Operations: survey, stage, switch, start, stop, health (hosts); lb.take_out, lb.put_back, lb.is_out (lies:
    says in while out), the same for ``registry``; alerts.mute, alerts.unmute; repository. -1 fails forever.
    """

    fail: dict[tuple[str, str], int] = field(default_factory=dict)
    hang: set[tuple[str, str]] = field(default_factory=set)

    def hit(self, op: str, host: str) -> bool:
        for key in ((op, host), (op, "*")):
            left = self.fail.get(key, 0)
            if left:
                self.fail[key] = left - 1 if left > 0 else left
                return True
        return False

    def hangs(self, op: str, host: str) -> bool:
        return (op, host) in self.hang or (op, "*") in self.hang


@dataclass
class World:
    """The whole simulated fleet, shared by every controller of a run."""

    hosts: dict[str, SimHost]
    healthy_versions: set[str]
    faults: Faults = field(default_factory=Faults)
    switches: list[SimSwitch] = field(default_factory=list)
    silencer: SimSilencer | None = None
    ops: int = 0  # await points passed
    kill_at: int | None = None  # the await point at which the running controller is killed
    violations: list[str] = field(default_factory=list)
    cap_known_down: set[str] = field(default_factory=set)  # hosts down before the release (graylift can see)
    on_point: Callable[[int], None] | None = None  # the scenario's hook at every await point (requests)
    frozen: list[asyncio.Future[None]] = field(default_factory=list)  # where stopped controllers wait
    lied: set[tuple[str, str]] = field(default_factory=set)  # (backend, host) it reported wrongly about
    faulted: set[tuple[str, str]] = field(default_factory=set)  # (backend, host) one of its calls failed for
    thawed: bool = False  # a stopped controller runs again (after its lease went to another)
    forbidden: set[str] = field(default_factory=set)  # rolled-back versions no rollback/resume/retry may switch to
    served_at_start: dict[str, str | None] = field(default_factory=dict)  # each host's version when the action began
    scripts: int = 0  # host commands of several parts in progress (graylift.sim.shell)

    def enter(self, what: str) -> None:
        """An operation on a host or a backend begins. A controller thawed after another took its release over
        must not begin one: it touches no host and no backend again."""
        if self.thawed:
            self.violations.append(f"a controller that lost its lease went on: {what}")

    async def point(self, what: str) -> None:
        """The await point after an operation's effect: a controller may be killed (or frozen) here, before it
        writes what it did; requests may arrive.

        A host does not stop with its controller: one stopped while commands of several parts run on hosts
        stops once none does (the hosts ran them to their end), so none goes on if it is thawed; a command it
        sends in the same turn of its loop goes out when it runs again (:class:`SimTransport`)."""
        self.ops += 1
        if self.on_point is not None:
            self.on_point(self.ops)
        if self.kill_at is not None and self.ops >= self.kill_at and not self.scripts:
            self.kill_at = None
            loop = asyncio.get_running_loop()
            loop.stop()
            frozen = loop.create_future()
            self.frozen.append(frozen)
            await frozen  # a killed controller never resumes; a frozen one resumes here when thawed
        await asyncio.sleep(0)

    def not_serving(self) -> set[str]:
        """Hosts that served and now are out of a load balancer, stopped, or on a version that answers 500."""
        out = set().union(*(s.out for s in self.switches)) if self.switches else set()
        sick = {h.name for h in self.hosts.values() if h.running is None or h.running not in self.healthy_versions}
        return {name for name in out | sick if self.hosts[name].served}

    def check_cap(self, allow_half: bool) -> None:
        down = self.not_serving()
        if not allow_half and len(down) * 2 >= len(self.hosts):
            self.violations.append(f"50% rule: {len(down)} of {len(self.hosts)} hosts out or not serving at once "
                                   f"({', '.join(sorted(down))})")


class SimTransport:
    """Runs the app's own commands on a simulated host: ``start`` and ``stop`` (what the sim's config names)."""

    def __init__(self, world: World, host: Host) -> None:
        self.world, self.host, self.state = world, host, world.hosts[host.name]

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        fenced = unwrap(command)  # the host's fence, as core/fence.py's shell check does it
        if fenced is not None:
            database, token, command = fenced
            if stdin is not None:  # read whole before the fence's lock and check; the end mark taken off
                assert stdin.endswith(INPUT_END), "a fenced command's input is sealed (core/fence.py)"
                stdin = stdin.removesuffix(INPUT_END)
        sent_late = False
        if command == "sh -s" and self.world.frozen:
            # the controller stopped in this turn of its loop, after its lease check for this command: the
            # command goes out when (if) it runs again, and meets the host's fence then
            await self.world.frozen[-1]
            sent_late = True
        if not self.state.reachable:
            raise HostUnreachable(self.host.name, "connection refused (simulated)")
        if fenced is not None:
            held = self.state.fence
            if held is not None and held[0] == database and held[1] > token:  # refused: nothing of it runs
                said = f"{MARK} refused: the host holds lease token {held[1]}, newer than {token} (simulated)"
                if check:
                    raise RemoteCommandFailed(self.host.name, command, REFUSED_EXIT, said)
                return CommandResult(REFUSED_EXIT, "", said)
            self.state.fence = (database, token)
        if command == "sh -s" and stdin is not None:  # several parts as one command (graylift.sim.shell)
            answer = await shell.run_script(self.world, self.host.name, stdin, timeout, checked=sent_late)
            if answer is None:
                raise RemoteCommandFailed(self.host.name, command, 127, "a script the simulation does not know")
            return answer
        what = f"{self.host.name}: {command}"
        self.world.enter(what)
        op = command.split()[0]
        if op == shell.PROBE_COMMAND:
            seen = shell.health_of(self.world, self.host.name)
            await self.world.point(f"{self.host.name}: health")
            return CommandResult(0 if seen.ok else 1, seen.detail, "")
        if self.world.faults.hangs(op, self.host.name):
            await asyncio.sleep(timeout)
            raise CommandTimeout(self.host.name, command, timeout)
        if self.world.faults.hit(op, self.host.name):
            raise RemoteCommandFailed(self.host.name, command, 1, f"{op} failed (simulated)")
        if op == "start":
            shell.start(self.state)
        elif op == "stop":
            shell.stop(self.state)
        else:
            raise RemoteCommandFailed(self.host.name, command, 127, f"unknown command {op} (simulated)")
        await self.world.point(what)
        return CommandResult(0, "", "")

    async def ping(self, *, timeout: float) -> None:
        """A pre-check that took its read ahead asks only whether the host answers (nothing runs there)."""
        if not self.state.reachable:
            raise HostUnreachable(self.host.name, "connection refused (simulated)")
        what = f"{self.host.name}: ping"
        self.world.enter(what)
        await self.world.point(what)

    async def put(self, local: object, remote: str) -> None:
        raise RemoteCommandFailed(self.host.name, "put", 1, "the simulation stages through its deploy dir")

    async def close(self) -> None:
        return None


class SimDeployDir:
    """The deploy dir of a simulated host (the DeployDir port)."""

    def __init__(self, world: World, transport: Transport) -> None:
        self.world, self.name = world, transport.host.name
        self.state = world.hosts[self.name]

    def _op(self, op: str) -> None:
        self.world.enter(f"{self.name}: {op}")
        if not self.state.reachable:
            raise HostUnreachable(self.name, "connection refused (simulated)")
        if self.world.faults.hit(op, self.name):
            raise RemoteCommandFailed(self.name, op, 1, f"{op} failed (simulated)")

    async def _done(self, op: str) -> None:
        await self.world.point(f"{self.name}: {op}")

    async def survey(self) -> Found:
        self._op("survey")
        found = self.state.found()
        await self._done("survey")
        return found

    async def current(self) -> str | None:
        self._op("survey")
        await self._done("survey")
        return self.state.current

    async def release(self, name: str) -> ReleaseDirs:
        self._op("survey")
        await self._done("survey")
        sha = self.state.releases[name][0] if name in self.state.releases else None
        return ReleaseDirs(name in self.state.releases, sha, self.state.current, self.state.newest_first)

    async def stage(self, pkg: Package, name: str, *, version: str, auth: object, replace: bool,
                    timeout: float) -> None:
        self._op("stage")
        if replace is False and name in self.state.releases:
            raise ArtifactError(f"{self.name}: releases/{name} exists and replace was not asked (simulated)")
        if name == self.state.current:
            self.world.violations.append(f"{self.name}: stage rewrote releases/{name}, the release in use")
        self.state.releases.pop(name, None)
        self.state.releases[name] = (pkg.sha256, version)
        await self._done("stage")

    async def stage_if_needed(self, pkg: Package, name: str, *, version: str, auth: object, min_free: int,
                              timeout: float) -> ReleaseDirs | None:
        if name in self.state.releases:  # looked at in the stage's own command: nothing fetched
            self._op("stage")
            await self._done("stage")
            return ReleaseDirs(True, self.state.releases[name][0], self.state.current, self.state.newest_first)
        await self.stage(pkg, name, version=version, auth=auth, replace=False, timeout=timeout)
        return None

    async def remove(self, names: list[str]) -> None:
        self._op("stage")
        for name in names:
            if name == self.state.current:
                self.world.violations.append(f"{self.name}: prune removed releases/{name}, the release in use")
            self.state.releases.pop(name, None)
        await self._done("stage")

    async def switch(self, name: str) -> None:
        self._op("switch")
        error = shell.switch(self.world, self.state, name)
        if error is not None:
            raise RemoteCommandFailed(self.name, "switch", 2, error)
        await self._done("switch")


class SimProbe:
    """The app's health check on a simulated host: running a healthy version."""

    name = "sim-health"

    def __init__(self, world: World) -> None:
        self.world = world

    async def check(self, transport: Transport) -> ProbeResult:
        host = transport.host.name
        self.world.enter(f"{host}: health")
        await self.world.point(f"{host}: health")
        if not self.world.hosts[host].reachable:
            raise HostUnreachable(host, "connection refused (simulated)")
        return shell.health_of(self.world, host)


@dataclass
class SimSwitch(FakeSwitch):
    """:class:`graylift.testing.FakeSwitch` on the simulated fleet: a load balancer whose ``out`` holds the hosts it
    sends no traffic to. Every call is an await point; the world's faults make a change fail or hang and
    ``is_out`` lie, and a take-out checks the 50% rule (unless ``allow_half``)."""

    name: str = "lb"
    world: World = field(kw_only=True)
    allow_half: bool = False

    async def _op(self, op: str, host: Host) -> None:
        self.world.enter(f"{self.name}: {op} {host.name}")
        key = f"{self.name}.{op}"
        if self.world.faults.hangs(key, host.name):
            self.world.faulted.add((self.name, host.name))
            await asyncio.sleep(HANG_SECONDS)
            raise TrafficError(f"{self.name}: {op} of {host.name} timed out (simulated)")
        if self.world.faults.hit(key, host.name):
            self.world.faulted.add((self.name, host.name))
            raise TrafficError(f"{self.name}: {op} of {host.name} failed (simulated)")

    async def take_out(self, host: Host) -> None:
        await super().take_out(host)
        self.world.check_cap(self.allow_half)
        await self.world.point(f"{self.name}: took out {host.name}")

    async def put_back(self, host: Host) -> None:
        await super().put_back(host)
        await self.world.point(f"{self.name}: put back {host.name}")

    async def is_out(self, host: Host) -> bool:
        self.world.enter(f"{self.name}: is_out {host.name}")
        await self.world.point(f"{self.name}: is_out {host.name}")
        if self.world.faults.hit(f"{self.name}.is_out", host.name):
            self.world.lied.add((self.name, host.name))
            return False  # lies: says the host is still in
        return host.name in self.out

    async def is_in(self, host: Host) -> bool:
        self.world.enter(f"{self.name}: is_in {host.name}")
        await self.world.point(f"{self.name}: is_in {host.name}")
        return host.name not in self.out


@dataclass
class SimSilencer(FakeSilencer):
    """:class:`graylift.testing.FakeSilencer` on the simulated fleet: every change is an await point, and the
    world's faults (``alerts.mute``, ``alerts.unmute``) make it fail."""

    name: str = "alerts"
    world: World = field(kw_only=True)

    async def _op(self, op: str, host: Host) -> None:
        self.world.enter(f"{self.name}: {op} {host.name}")
        if self.world.faults.hit(f"{self.name}.{op}", host.name):
            raise SilencerError(f"{self.name}: {op} of {host.name} failed (simulated)")

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        silence = await super().mute(host, until=until, reason=reason)
        await self.world.point(f"{self.name}: muted {host.name}")
        return silence

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        await super().unmute(host, reason=reason, silence_id=silence_id)
        await self.world.point(f"{self.name}: unmuted {host.name}")


class SimRepository:
    """Packages of every version the run knows; each version's sha256 is fixed for the run."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.down = False

    async def resolve(self, app: str, version: str) -> Package:
        await self.world.point(f"repository: {version}")
        if self.down or self.world.faults.hit("repository", "*"):
            raise ArtifactError(f"artifact repository unreachable (simulated): cannot resolve {app} {version}")
        sha = (version.encode().hex() * 64)[:64]
        return Package(app, version, PackageKind.TAR_GZ, f"{app}-{version}.tar.gz", sha, url=f"sim://{version}")
