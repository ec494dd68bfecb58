"""Scenarios: what happens to a fleet in one simulated run, generated from a seed.

A scenario is data (a fleet size, a strategy, a list of actions), so a failing seed can be replayed exactly
and shrunk: :func:`shrink` removes actions one at a time while the run still fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

OPS = ("survey", "stage", "switch", "start", "stop", "health", "lb.take_out", "lb.put_back", "lb.is_out",
       "registry.take_out", "registry.put_back", "registry.is_out", "alerts.mute", "alerts.unmute")


@dataclass(frozen=True)
class Action:
    """One thing that happens. ``kind`` is one of:

    release VERSION, rollback, resume, retry (each followed by a controller driving the release);
    pause|abort|promote|rollback_request AT (a request made at the AT-th await point of the next drive);
    kill AT (the next drive's controller dies at its AT-th await point); freeze AT (it stops there) and thaw (the
    oldest stopped controller runs again, long after another took over: it must stop without touching a host);
    fault OP HOST COUNT (-1: forever) or hang OP HOST; heal (no more faults);
    sick HOST (its app stops), unreachable HOST, reachable HOST, repo_down, repo_up.
    """

    kind: str
    version: str = ""
    host: str = ""
    op: str = ""
    count: int = 0
    at: int = 0

    def __str__(self) -> str:
        parts = [self.kind] + [str(v) for v in (self.version, self.op, self.host) if v]
        if self.count:
            parts.append(f"x{self.count}")
        if self.at:
            parts.append(f"@{self.at}")
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    seed: int
    hosts: int
    beta: int
    strategy: dict[str, Any]
    keep_releases: int
    healthy: frozenset[str]
    actions: tuple[Action, ...] = field(default=())
    # the host commands fused as the wiring sends them to a shell host (a pre-check's survey and health check
    # in one command, the restart in one: graylift.sim.shell), or one by one; even seeds fuse
    fused: bool = False
    # every release and rollback is started and driven as `graylift release --wait` does: its drive takes what
    # its preflight read of each host (a pre-check may use that read: strategy.precheck_ahead); half the seeds
    waits: bool = False

    def without(self, index: int) -> Scenario:
        return replace(self, actions=self.actions[:index] + self.actions[index + 1:])

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {self.hosts} hosts ({self.beta} beta), strategy {self.strategy}, "
                 f"keep {self.keep_releases}, healthy versions {sorted(self.healthy)}"
                 + (", host commands fused" if self.fused else "")
                 + (", started as with --wait" if self.waits else "")]
        lines += [f"  {i + 1}. {a}" for i, a in enumerate(self.actions)]
        return "\n".join(lines)


def generate(seed: int) -> Scenario:
    rng = random.Random(seed)
    hosts = rng.randint(3, 7)
    beta = rng.randint(0, min(2, hosts - 2))
    size = rng.randint(1, max(1, (hosts - 1) // 2 - (1 if hosts > 5 else 0)))
    strategy: dict[str, Any] = {
        "batch": {"size": size},
        "max_parallel": rng.choice([1, 2, 50]),
        "failure_budget": {"per_batch": rng.choice([0, 0, 1]), "total": rng.choice([0, 1, 2])},
        "on_failure": rng.choice(["pause", "rollback"]),
        "on_unhealthy": rng.choice(["skip", "skip", "fail"]),
        "pause": rng.choice([0, 0, 5]),
    }
    if beta:
        strategy["canary"] = {"group": "beta", "count": rng.randint(1, beta), "bake": rng.choice([0, 5, 30]),
                              "promote": rng.choice(["auto", "auto", "manual"])}
    versions = [f"{n}.0.0" for n in range(1, 7)]
    healthy = frozenset({versions[0]} | {v for v in versions[1:] if rng.random() < 0.7})
    host_names = [f"h{i}" for i in range(1, hosts + 1)]
    actions = [Action("release", version=versions[0])]
    next_version = 1
    for _ in range(rng.randint(2, 7)):
        roll = rng.random()
        if roll < 0.30 and next_version < len(versions):
            actions.append(Action("release", version=versions[next_version]))
            next_version += 1
        elif roll < 0.40:
            actions.append(Action("rollback"))
        elif roll < 0.52:
            actions.append(Action(rng.choice(["pause", "abort", "promote", "rollback_request"]),
                                  at=rng.randint(1, 150)))
        elif roll < 0.53 and next_version < len(versions):
            # a rollback that gets stuck on a host, then a person fixes it and resumes (or retries)
            actions += [Action("rollback_request", at=rng.randint(20, 120)),
                        Action("fault", op=rng.choice(["switch", "start", "registry.put_back"]),
                               host=rng.choice(host_names), count=-1),
                        Action("release", version=versions[next_version]), Action("heal"),
                        Action(rng.choice(["resume", "retry"]))]
            next_version += 1
        elif roll < 0.56:
            actions.append(Action("kill", at=rng.randint(1, 200)))
        elif roll < 0.60:
            actions.append(Action("freeze", at=rng.randint(1, 200)))
            actions.append(Action(rng.choice(["resume", "rollback", "release"]), version=versions[min(
                next_version, len(versions) - 1)]))
            actions.append(Action("thaw"))
        elif roll < 0.68:
            actions.append(Action(rng.choice(["resume", "retry"])))
        elif roll < 0.84:
            op = rng.choice(OPS)
            if op in ("start", "lb.take_out", "registry.put_back") and rng.random() < 0.3:
                actions.append(Action("hang", op=op, host=rng.choice(host_names)))
            else:
                actions.append(Action("fault", op=op, host=rng.choice([*host_names, "*"]),
                                      count=rng.choice([1, 1, 2, -1])))
        elif roll < 0.88:
            actions.append(Action("heal"))
        elif roll < 0.92:
            actions.append(Action("sick", host=rng.choice(host_names)))
        elif roll < 0.96:
            actions.append(Action(rng.choice(["unreachable", "reachable"]), host=rng.choice(host_names)))
        else:
            actions.append(Action(rng.choice(["repo_down", "repo_up"])))
    return Scenario(seed, hosts, beta, strategy, rng.choice([2, 3, 5]), healthy, tuple(actions), fused=seed % 2 == 0,
                    waits=seed // 2 % 2 == 0)
