"""Blue-green releases: two host groups; the new version goes to the idle one, then one switch moves all traffic.

The release's plan has one batch (the idle group) and a ``blue_green`` section (:class:`BlueGreen`); its cursor
says which phase it is in (:func:`phase_of`):

    =========  ===================  =========================================================================
    cursor     phase                what happens
    =========  ===================  =========================================================================
    0          idle                 every idle host: precheck, stage, mute, take_out (a no-op: it is out),
                                    quiet, stop, switch, start, health, unmute (:data:`IDLE_FLOW`). It is
                                    never put back: it does not serve yet. A host that fails is reverted to
                                    what it ran, out of traffic; the release stops before any switch.
    1          switch               every idle host into every LB and registry, each verified; only then every
                                    live host out of every one, verified and drained (:func:`switch_order`):
                                    capacity never drops. Then the rollback window (state ``baking``): the old
                                    group keeps running out of traffic; the new group is health-checked.
    2          done                 the window ended (or ``graylift promote``): the release succeeded. The old
                                    group is the idle group of the next release; it is left running.
    =========  ===================  =========================================================================

A rollback (``graylift rollback`` in the window, or a failed health check in it) is the switch the other way:
the old group in, verified, then the new group out; nothing is stopped or restarted.

Which group serves is durable: each switch records it in its release's plan (``serving``), and the next
release reads it from the newest blue-green release of the app/env (:func:`serving_group`); the first one
takes the first group of ``strategy.blue_green.groups`` to be serving.

Worked example: hosts b1, b2 (blue) and g1, g2 (green), blue serving::

    >>> from graylift.core.model import StrategyKind
    >>> hosts = [Host(n, "10.0.0.1", group="blue" if n[0] == "b" else "green") for n in ("b1", "b2", "g1", "g2")]
    >>> plan = make_blue_green_plan(hosts, Strategy(kind=StrategyKind.BLUE_GREEN), serving="blue")
    >>> [b.hosts for b in plan.batches], BlueGreen.of(plan).live_names
    ([('g1', 'g2')], ('b1', 'b2'))
    >>> ["{} {}".format(*s) for s in switch_order(into=("g1", "g2"), out_of=("b1", "b2"))]
    ['in g1', 'in g2', 'out b1', 'out b2']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from graylift.core.flow import Step, undo_steps
from graylift.core.model import Host, Strategy, StrategyKind
from graylift.core.plan import Batch, Plan, SkippedHost, Timing
from graylift.errors import PlanError

IDLE_FLOW: tuple[Step, ...] = tuple(s for s in Step if s is not Step.PUT_BACK)
"""One idle host: the release flow without put-back (the switch puts the whole group in at once)."""

SWITCH_SECONDS = 5.0  # what the estimate counts for the switch itself


class Phase(StrEnum):
    IDLE = "idle"
    SWITCH = "switch"
    DONE = "done"


def phase_of(cursor: int) -> Phase:
    """The phase a blue-green release's cursor stands for (the table in the module docstring).

    >>> [phase_of(c).value for c in (0, 1, 2, 3)]
    ['idle', 'switch', 'done', 'done']
    """
    return (Phase.IDLE, Phase.SWITCH)[cursor] if cursor < 2 else Phase.DONE


@dataclass(frozen=True)
class BlueGreen:
    """A blue-green release's groups: ``idle`` gets the new version, ``live`` served when the release started.

    ``live_hosts`` are kept as host specs (they have no host run: nothing is done on them but the switch);
    ``serving`` is the group in traffic now, updated by every switch.
    """

    live: str
    idle: str
    live_hosts: tuple[Host, ...]
    idle_names: tuple[str, ...]
    window_seconds: float
    serving: str

    @property
    def live_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.live_hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "idle": self.idle, "idle_hosts": list(self.idle_names),
                "live_hosts": [asdict(h) for h in self.live_hosts], "window_seconds": self.window_seconds,
                "serving": self.serving}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlueGreen:
        return cls(data["live"], data["idle"], tuple(Host(**h) for h in data["live_hosts"]),
                   tuple(data["idle_hosts"]), float(data["window_seconds"]), data["serving"])

    @classmethod
    def of(cls, plan: Plan | Mapping[str, Any]) -> BlueGreen:
        """The blue-green section of a plan (or of a release's plan dict)."""
        section = plan.blue_green if isinstance(plan, Plan) else plan.get("blue_green")
        if section is None:
            raise ValueError("not a blue-green plan")
        return cls.from_dict(section)


def is_blue_green(plan: Mapping[str, Any]) -> bool:
    """True for a release's plan dict made by :func:`make_blue_green_plan`."""
    return plan.get("blue_green") is not None


def switch_order(*, into: Sequence[str], out_of: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The switch as ordered actions: every host of ``into`` in (verified) before any host of ``out_of`` goes
    out, so the hosts in traffic never drop below the smaller group. A host in both is only put in."""
    return (*(("in", h) for h in into), *(("out", h) for h in out_of if h not in into))


def idle_undo(begun: Iterable[Step], *, has_previous: bool) -> tuple[Step, ...]:
    """What undoes a partly released idle host: :func:`graylift.core.flow.undo_steps` without the traffic
    steps. An idle host never serves outside a switch, so it goes back to what it ran, out of traffic.

    >>> idle_undo([Step.PRECHECK, Step.STAGE, Step.MUTE, Step.TAKE_OUT, Step.STOP], has_previous=True)
    (<Step.STOP: 'stop'>, <Step.SWITCH: 'switch'>, <Step.START: 'start'>, <Step.HEALTH: 'health'>, \
<Step.UNMUTE: 'unmute'>)
    """
    traffic = {Step.TAKE_OUT, Step.QUIET, Step.PUT_BACK}
    return tuple(s for s in undo_steps(begun, has_previous=has_previous) if s not in traffic)


def serving_group(plans: Iterable[Mapping[str, Any]], groups: tuple[str, str]) -> str:
    """The group in traffic: ``serving`` of the newest blue-green plan (``plans`` newest first) that names
    one of ``groups``, else the first group.

    >>> serving_group([{"batches": []}, {"blue_green": {"serving": "green"}}], ("blue", "green"))
    'green'
    """
    for plan in plans:
        section = plan.get("blue_green")
        if section and section.get("serving") in groups:
            return str(section["serving"])
    return groups[0]


def make_blue_green_plan(hosts: Sequence[Host], strategy: Strategy, *, serving: str,
                         timing: Timing = Timing()) -> Plan:
    """The plan of a blue-green release: the idle group (the one of ``strategy.blue_green_groups`` that is not
    ``serving``) in one batch, and the live group kept for the switch.

    Every host must be in one of the two groups, and each group must have an in-service host; hosts in
    maintenance are left out of both (skipped). A host unhealthy before the release is not skipped: an idle
    one is restarted anyway and must pass its health check before the switch, a live one goes out of traffic.
    """
    if strategy.kind is not StrategyKind.BLUE_GREEN:
        raise ValueError("not a blue-green strategy")
    groups = strategy.blue_green_groups
    if serving not in groups:
        raise PlanError(f"the serving group {serving!r} is not one of strategy.blue_green.groups {list(groups)}")
    strays = [f"{h.name} ({h.group})" for h in hosts if h.group not in groups]
    if strays:
        raise PlanError(f"host(s) {', '.join(strays)} are in neither group {groups[0]} nor {groups[1]}: set each "
                        "host's group in the CMDB, or fix strategy.blue_green.groups")
    idle = groups[1] if serving == groups[0] else groups[0]
    skipped = tuple(SkippedHost(h.name, "in maintenance (CMDB)") for h in hosts if not h.in_service)
    members = {g: [h for h in hosts if h.group == g and h.in_service] for g in groups}
    for group in groups:
        if not members[group]:
            raise PlanError(f"blue-green group {group!r} has no in-service host for this app/env: put hosts in "
                            "it in the CMDB (their group), or fix strategy.blue_green.groups")
    section = BlueGreen(serving, idle, tuple(members[serving]), tuple(h.name for h in members[idle]),
                        strategy.rollback_window_seconds, serving)
    batch = Batch(0, section.idle_names, label=f"{idle} (idle): stage, start, health")
    estimate = timing.host_seconds + SWITCH_SECONDS
    return Plan((batch,), skipped, len(hosts), estimate, blue_green=section.to_dict())


def describe(plan: Plan) -> list[str]:
    """The blue-green phases of ``plan`` as lines for ``graylift plan``."""
    bg = BlueGreen.of(plan)
    window = bg.window_seconds
    return [
        f"1. {bg.idle} (idle, {len(bg.idle_names)} host(s)): stage, stop, switch, start, health; out of traffic",
        f"2. switch: {bg.idle} into every load balancer and registry, verified; then {bg.live} "
        f"({len(bg.live_hosts)} host(s)) out, verified and drained",
        f"3. rollback window {window:g}s: {bg.live} keeps running out of traffic; `graylift rollback` switches "
        "back without a restart",
    ]
