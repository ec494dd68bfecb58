"""What must hold after every simulated run (and, for the 50% rule, at every instant: see world.check_cap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graylift.core.state import Direction, HostState, ReleaseState
from graylift.store import HostRunRecord, ReleaseRecord

if TYPE_CHECKING:
    from graylift.sim.run import Run

APP, ENV = "sim", "prod"
KEPT_OUT = ("first install", "revert failed", "could not roll it back", "rollback was reverted")
"""Records of a host graylift leaves out of traffic on purpose (it could not be restarted or rolled back)."""


def all_invariants(run: Run) -> list[str]:
    return [*left_out(run), *versions(run), *final_or_paused(run), *one_driver_per_epoch(run),
            *back_stays_back(run)]


def back_stays_back(run: Run) -> list[str]:
    """A release that started rolling back never goes forward again: it never succeeds, and its version is
    never recorded as deployed by it."""
    problems = []
    deployed = {(d.release_id, d.version, d.source) for d in run.store.deployed_versions(APP, ENV)}
    for rec, _ in _releases(run):
        if rec.direction is Direction.BACK:
            if rec.state is ReleaseState.SUCCEEDED:
                problems.append(f"release #{rec.id} started rolling back, then succeeded forward")
            if (rec.id, rec.version, "release") in deployed:
                problems.append(f"release #{rec.id} rolled back, yet recorded {rec.version} as deployed")
    return problems


def _releases(run: Run) -> list[tuple[ReleaseRecord, list[HostRunRecord]]]:
    """Every release of the run, oldest first, with its host runs (read once per check)."""
    if run.checked is None:
        releases = list(reversed(run.store.list_releases(APP, ENV, limit=1000)))
        run.checked = [(rec, run.store.host_runs(rec.id)) for rec in releases]
    return run.checked


def attention(run: Run) -> set[str]:
    hosts = set(run.store.host_health(APP, ENV))
    for _, runs in _releases(run):
        hosts |= {r.host for r in runs if r.state is HostState.NEEDS_ATTENTION}
    return hosts


def left_out(run: Run) -> list[str]:
    """No host out of any backend, stopped or muted unless it is recorded needs_attention with the reason."""
    problems = []
    marked = attention(run)
    last_runs = _last_runs(run)
    health = run.store.host_health(APP, ENV)
    backends = {h: set(record.backends) for h, record in health.items()}
    reasons = {h: record.reason for h, record in health.items()}
    for name, host in run.world.hosts.items():
        why = []
        if any(name in s.out for s in run.world.switches):
            why.append("out of the load balancer")
        if host.running is None and host.current is not None and name not in run.externally_stopped:
            why.append("stopped")
        muted = run.world.silencer is not None and name in run.world.silencer.muted
        warned = "unmute" in (last_runs.get(name) or "")
        if muted and not warned:
            why.append("muted")
        if why and name not in marked:
            problems.append(f"{name}: {' and '.join(why)}, not recorded as needing attention")
        said = (last_runs.get(name) or "") + " " + (reasons.get(name) or "")
        kept_out_on_purpose = any(words in said for words in KEPT_OUT)
        for switch in run.world.switches:
            if name in switch.out and (switch.name, name) not in run.world.faulted and not kept_out_on_purpose:
                problems.append(f"{name}: out of {switch.name}, which never failed for it (one broken backend "
                                f"kept it out of the others)")
        named = backends.get(name)
        for switch in run.world.switches:
            lied = (switch.name, name) in run.world.lied  # a backend that lied cannot be recorded right
            if name in switch.out and named and switch.name not in named and not lied:
                problems.append(f"{name}: out of {switch.name}, but needs attention only for {sorted(named)}")
    return problems


def _last_runs(run: Run) -> dict[str, str]:
    errors: dict[str, str] = {}
    for _, runs in _releases(run):
        for r in runs:
            if r.state.settled:
                errors[r.host] = r.error or ""
    return errors


def versions(run: Run) -> list[str]:
    """Every host serves one version, the one its record says (hosts needing attention aside)."""
    expected: dict[str, str | None] = {}
    for rec, runs in _releases(run):
        for r in runs:
            if r.state in (HostState.DONE, HostState.ROLLED_BACK):
                expected[r.host] = r.target_version
            elif r.state is HostState.ROLLING_BACK and not r.done_steps:  # queued to go back: still on the new one
                expected[r.host] = rec.version
    marked = attention(run)
    problems = []
    for name, host in run.world.hosts.items():
        if name in marked:
            continue
        on_disk = host.releases[host.current][1] if host.current else None
        if name in expected and on_disk != expected[name]:
            problems.append(f"{name}: current -> {on_disk}, its record says {expected[name]}")
        if host.running is not None and host.running != on_disk:
            problems.append(f"{name}: runs {host.running} but current -> {on_disk}")
    return problems


def final_or_paused(run: Run) -> list[str]:
    """Every release ends in a final state, or paused with a reason."""
    problems = []
    for rec, _ in _releases(run):
        if rec.state.finished:
            continue
        if rec.state is ReleaseState.PAUSED and rec.message:
            continue
        problems.append(f"release #{rec.id} is left {rec.state} ({rec.message or 'no reason'})")
    return problems


def one_driver_per_epoch(run: Run) -> list[str]:
    """Only the lease holder of an epoch wrote to the release, and nothing of an epoch after the next claim."""
    problems = []
    for rec, _ in _releases(run):
        owners: dict[int, str] = {}
        claims: dict[int, int] = {}
        entries = run.store.journal_entries(rec.id)
        for e in entries:
            if e.event == "claimed" and e.epoch is not None:
                claims[e.epoch] = e.id
                owners[e.epoch] = e.owner or ""
        for e in entries:
            if e.epoch is None:
                continue
            if owners.get(e.epoch) != e.owner:
                problems.append(f"release #{rec.id}: entry {e.id} of epoch {e.epoch} written by {e.owner}, "
                                f"not the holder {owners.get(e.epoch)}")
            later = claims.get(e.epoch + 1)
            if later is not None and e.id > later:
                problems.append(f"release #{rec.id}: entry {e.id} of epoch {e.epoch} written after epoch "
                                f"{e.epoch + 1} was claimed")
    return problems
