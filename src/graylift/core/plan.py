"""Strategy + hosts -> ordered batches. The "never 50% or more at once" rule lives here.

Worked example: 10 hosts (1 in group ``beta``, 1 in maintenance), canary group ``beta`` count 1,
batch size 3::

    unavailable = 1 (maintenance)      # already out: counts against the cap
    canary      = [beta-01]            # 1 + 1 unavailable = 2 out at once; 2 * 2 < 10  -> ok
    batches     = 8 hosts left in batches of 3 -> [3, 3, 2]; 3 + 1 = 4 out; 4 * 2 < 10 -> ok

A batch of 4 would put 5 of 10 hosts out at once (50%) and is refused.

The same rule holds for every later pass over the fleet (each batch when it starts, a revert, a
rollback, a retry): :func:`wave` picks the next hosts of a pass so that the hosts already out or not
serving (skipped, failed, needs attention, in maintenance, left needing attention by an earlier release)
plus the wave stay under half of the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graylift.core.model import Host, Strategy
from graylift.errors import PlanError


@dataclass(frozen=True)
class Batch:
    index: int
    hosts: tuple[str, ...]
    canary: bool = False
    label: str = ""


@dataclass(frozen=True)
class SkippedHost:
    host: str
    reason: str


@dataclass(frozen=True)
class Timing:
    """Per-host and per-release time the estimate is built from (seconds)."""

    host_seconds: float = 20.0  # stage + take-out + quiet + restart + health, one host
    bake_seconds: float = 0.0
    pause_seconds: float = 0.0


@dataclass(frozen=True)
class Plan:
    batches: tuple[Batch, ...]
    skipped: tuple[SkippedHost, ...] = ()
    cluster_size: int = 0
    estimate_seconds: float = 0.0
    canary_required: int = 0  # canaries that must run the new version and bake healthy before promotion
    known_out: tuple[str, ...] = ()  # released to, but out of service when the plan was made (count against the cap)
    blue_green: Mapping[str, Any] | None = None  # a blue-green release's groups (graylift.core.bluegreen)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for b in self.batches for h in b.hosts)

    def batch_of(self, host: str) -> int:
        for batch in self.batches:
            if host in batch.hosts:
                return batch.index
        raise KeyError(host)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [{"index": b.index, "hosts": list(b.hosts), "canary": b.canary, "label": b.label}
                        for b in self.batches],
            "skipped": [{"host": s.host, "reason": s.reason} for s in self.skipped],
            "cluster_size": self.cluster_size,
            "estimate_seconds": self.estimate_seconds,
            "canary_required": self.canary_required,
            "known_out": list(self.known_out),
        } | ({"blue_green": dict(self.blue_green)} if self.blue_green is not None else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            batches=tuple(
                Batch(b["index"], tuple(b["hosts"]), b["canary"], b.get("label", "")) for b in data["batches"]
            ),
            skipped=tuple(SkippedHost(s["host"], s["reason"]) for s in data.get("skipped", [])),
            cluster_size=data.get("cluster_size", 0),
            estimate_seconds=data.get("estimate_seconds", 0.0),
            canary_required=data.get("canary_required", 0),
            known_out=tuple(data.get("known_out", ())),
            blue_green=data.get("blue_green"),
        )

    @property
    def canary(self) -> Batch | None:
        return self.batches[0] if self.batches and self.batches[0].canary else None

    def with_canary_replacement(self, replacement: str) -> Plan:
        """The plan with ``replacement`` moved from its rolling batch into the canary batch.

        A rolling batch may become empty; it keeps its place (and index) and is passed over.
        """
        canary = self.canary
        if canary is None or replacement in canary.hosts:
            raise ValueError(f"{replacement} cannot replace a canary in this plan")
        batches = []
        for batch in self.batches:
            if batch is canary:
                batches.append(Batch(batch.index, (*batch.hosts, replacement), True, batch.label))
            else:
                batches.append(Batch(batch.index, tuple(h for h in batch.hosts if h != replacement),
                                     batch.canary, batch.label))
        return Plan(tuple(batches), self.skipped, self.cluster_size, self.estimate_seconds, self.canary_required,
                    self.known_out)


def batch_size_for(strategy: Strategy, in_service: int) -> int:
    """Hosts per rolling batch: ``size``, or ``ceil(percent% of in-service hosts)``; at least 1.

    >>> batch_size_for(Strategy(batch_percent=20), 12)   # 2.4 -> 3
    3
    """
    if strategy.batch_size is not None:
        return max(1, strategy.batch_size)
    if strategy.batch_percent is not None:
        return max(1, math.ceil(in_service * strategy.batch_percent / 100))
    return 1


def spread_by_zone(hosts: Sequence[Host]) -> list[Host]:
    """Interleave hosts across zones (tag ``zone``) so one batch does not empty one zone.

    Hosts keep their order within a zone; zones are visited in order of first appearance.
    """
    zones: dict[str, list[Host]] = {}
    for host in hosts:
        zones.setdefault(host.zone, []).append(host)
    order: list[Host] = []
    queues = list(zones.values())
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def max_out(cluster_size: int, strategy: Strategy) -> int:
    """The most hosts that may be out of service at once: fewer than half the cluster.

    >>> max_out(10, Strategy()), max_out(9, Strategy()), max_out(2, Strategy())
    (4, 4, 0)
    """
    if strategy.allow_half_or_more:
        return cluster_size
    return max(0, (cluster_size - 1) // 2)


def check_cap(out_at_once: int, cluster_size: int, what: str, strategy: Strategy) -> None:
    """Refuse a step that takes 50% or more of the cluster out at once.

    ``out_at_once`` counts the batch plus hosts already out (unhealthy, in maintenance).
    """
    if strategy.allow_half_or_more or cluster_size == 0:
        return
    if out_at_once > max_out(cluster_size, strategy):
        raise PlanError(
            f"{what} would take {out_at_once} of {cluster_size} hosts out of service at once "
            f"({out_at_once * 100 // cluster_size}%); graylift never takes 50% or more. "
            "Use a smaller strategy.batch.size / percent or fewer canary hosts "
            "(or set strategy.allow_half_or_more: true for a deliberately tiny cluster)."
        )


def _canary_hosts(candidates: Sequence[Host], strategy: Strategy) -> list[Host]:
    by_name = {h.name: h for h in candidates}
    if strategy.canary_hosts:
        missing = [n for n in strategy.canary_hosts if n not in by_name]
        if missing:
            raise PlanError(
                f"canary host(s) {', '.join(missing)} are not in service for this app/env; "
                "fix strategy.canary.hosts or the CMDB"
            )
        return [by_name[n] for n in strategy.canary_hosts]
    if strategy.canary_group is not None:
        group = [h for h in candidates if h.group == strategy.canary_group]
        if not group:
            raise PlanError(
                f"no in-service host in canary group {strategy.canary_group!r}; "
                "put a host in that group in the CMDB or change strategy.canary.group"
            )
        return group[: max(1, strategy.canary_count)]
    return []


def make_plan(
    hosts: Sequence[Host],
    strategy: Strategy,
    *,
    unhealthy: Mapping[str, str] | None = None,
    attention: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
    timing: Timing = Timing(),
    canary: bool = True,
) -> Plan:
    """Order the hosts into a canary batch (optional) and rolling batches.

    ``unhealthy`` maps host name -> reason for hosts a pre-check already found down; they are skipped
    and count against the 50% cap like hosts in maintenance. ``attention`` maps host name -> reason for
    hosts known out of service that are still released to (left needing attention by an earlier release; on
    a rollback, found unhealthy): never canaries, and they count against the cap until the release
    succeeds on them (``Plan.known_out``). ``only`` restricts the plan to these host names while the cap still
    counts the whole cluster.
    """
    if not hosts:
        raise PlanError("no hosts to release to: the CMDB has none for this app/env")
    unhealthy = dict(unhealthy or {})
    attention = dict(attention or {})
    wanted = set(only) if only is not None else None
    skipped: list[SkippedHost] = []
    candidates: list[Host] = []
    for host in hosts:
        if not host.in_service:
            skipped.append(SkippedHost(host.name, "in maintenance (CMDB)"))
        elif host.name in unhealthy:
            skipped.append(SkippedHost(host.name, f"unhealthy before release: {unhealthy[host.name]}"))
        elif wanted is None or host.name in wanted:
            candidates.append(host)
    cluster = len(hosts)
    out = {h.name for h in hosts if not h.in_service or h.name in unhealthy or h.name in attention}
    in_service = cluster - sum(1 for h in hosts if not h.in_service)

    def check(names: Iterable[str], what: str) -> None:
        check_cap(len(out | set(names)), cluster, what, strategy)

    batches: list[Batch] = []
    healthy = [h for h in candidates if h.name not in attention]
    first: list[Host] = _canary_hosts(healthy, strategy) if canary and strategy.has_canary else []
    if first:
        check((h.name for h in first), "the canary batch")
        batches.append(Batch(0, tuple(h.name for h in first), canary=True, label="canary"))
    rest = spread_by_zone([h for h in candidates if h not in first])
    size = batch_size_for(strategy, in_service)
    for number, start in enumerate(range(0, len(rest), size), start=1):
        names = tuple(h.name for h in rest[start : start + size])
        check(names, f"a batch of {size}")
        batches.append(Batch(len(batches), names, label=f"batch {number}"))

    estimate = len(batches) * timing.host_seconds
    if first:
        estimate += timing.bake_seconds
    estimate += max(0, len(batches) - 1) * timing.pause_seconds
    return Plan(tuple(batches), tuple(skipped), cluster, estimate, canary_required=len(first),
                known_out=tuple(h.name for h in candidates if h.name in attention))


def wave(todo: Sequence[str], out: Collection[str], *, cluster_size: int, size: int,
         strategy: Strategy) -> tuple[str, ...]:
    """The next hosts of a pass (rollback, revert, retry) to take out together.

    At most ``size`` hosts of ``todo``, in order, such that ``out`` (every host already out or not
    serving) together with the wave stays under half of the cluster. Hosts of ``todo`` that are already
    out cost nothing and come first. An empty result with ``todo`` not empty means the pass must wait:
    too many hosts are out.

    Worked example: 10 hosts, 3 skipped and 1 failed (4 out), batch size 4: at most 4 may be out at
    once, so the wave is 0 hosts; with 2 out it is 2 hosts::

        >>> wave(["a", "b", "c", "d"], {"x", "y"}, cluster_size=10, size=4, strategy=Strategy())
        ('a', 'b')
        >>> wave(["a", "x", "b"], {"x", "y", "z", "w"}, cluster_size=10, size=4, strategy=Strategy())
        ('x',)
    """
    already = set(out)
    free = [h for h in todo if h in already]
    room = max_out(cluster_size, strategy) - len(already)
    costly = [h for h in todo if h not in already][: max(0, room)]
    return tuple((free + costly)[: max(1, size)] if free or costly else ())
