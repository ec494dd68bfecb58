"""What `graylift doctor` decides: given what the store says of a host and what the host and its backends say
now, what is wrong with it and which steps put it right.

The store's side (:class:`Record`) is the host's run in the last release that touched it: a pass that was begun
and never finished (a controller killed mid-host), the version the record says it runs, a needs-attention
mark. The live side (:class:`Live`) is a read-only survey: the backends that have it out, the silencers that
mute it, whether its app serves, what ``current`` points at.

    ==============================================  ==================================================
    found                                           repair
    ==============================================  ==================================================
    a release of the app/env is live (lease fresh)  none: the release driving it is left alone
    a pass begun, never finished; nobody drives it  revert: the engine's undo (flow.undo_steps) of that
                                                    pass, then the release does the host again (a revert
                                                    or rollback pass: the engine finishes it)
    not serving                                     (take_out if in traffic,) stop, start, health,
                                                    put_back (, unmute)
    out of a backend, serving                       put_back (, unmute)
    muted                                           unmute
    on another version than its record says         none: `graylift release APP V` puts it on V
    fresh (nothing installed) and out               none: a release installs it
    marked needs attention, nothing else wrong      clear the mark
    ==============================================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graylift.core.flow import Step, undo_steps


class Repair(StrEnum):
    NOTHING = "nothing"  # nothing wrong
    REVERT = "revert"  # the engine reverts the unfinished pass of the release (``steps`` is its undo)
    STEPS = "steps"  # run ``steps`` on the host, as it is (its ``current`` release)
    CLEAR = "clear"  # only the needs-attention mark is left: forget it
    REFUSED = "refused"  # a live release drives it, or a person must act (``advice``)


@dataclass(frozen=True)
class Record:
    """What the store says about one host: its run in the last release that touched it."""

    release_id: int | None = None
    begun: tuple[Step, ...] = ()  # steps begun (done or in progress) of a pass that never finished
    stopped_at: Step | None = None  # the step in progress when it stopped
    has_previous: bool = True  # its pass's pre-check found a release to go back to
    version: str | None = None  # the version the record says it runs (None: the record does not say)
    attention: str | None = None  # why the CMDB marks it needing attention
    driven_by: str | None = None  # a live release of the app/env and its controller, e.g. "release #9 (ctl:42:ab)"
    undoing: str = ""  # the unfinished pass was itself a "revert" or a "rollback" (else a forward pass)


@dataclass(frozen=True)
class Live:
    """What the host and its backends say now (read-only)."""

    out_of: tuple[str, ...] = ()  # backends that have it out of traffic
    muted_by: tuple[str, ...] = ()  # silencers with an active silence for it (``name`` or ``name (id)``)
    serving: bool = True  # its health checks pass
    health: str = ""  # what the failing check said
    version: str | None = None  # the version ``current`` points at
    fresh: bool = False  # nothing installed
    unreadable: str | None = None  # the survey could not read it


@dataclass(frozen=True)
class Diagnosis:
    host: str
    problems: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    repair: Repair = Repair.NOTHING
    steps: tuple[Step, ...] = ()
    advice: str = ""  # why a repair is refused, or what a person should run

    @property
    def wrong(self) -> bool:
        return bool(self.problems)


def live_problems(live: Live) -> list[str]:
    """One phrase per thing wrong on the host now, e.g. ``drained in haproxy:web``, ``stopped``."""
    found = [f"out of traffic in {name}" for name in live.out_of]
    found += [f"muted in {name}" for name in live.muted_by]
    if not live.serving and not live.fresh:
        found.append(f"not serving ({live.health})" if live.health else "not serving")
    return found


def diagnose(host: str, record: Record, live: Live, *, app: str, env: str) -> Diagnosis:
    """What is wrong with ``host`` and which repair puts it right (the table in the module docstring)."""
    if live.unreadable is not None:
        return Diagnosis(host, (f"unreadable ({live.unreadable})",), repair=Repair.REFUSED,
                         advice="fix its SSH access and run doctor again")
    rid = f"release #{record.release_id}"
    problems = live_problems(live)
    evidence = [f"live: {p}" for p in problems]
    if record.begun:
        where = f"{rid} stopped at {record.stopped_at.value}" if record.stopped_at else f"{rid} left it mid-pass"
        problems.insert(0, where)
        evidence.insert(0, f"journal: {rid} began {', '.join(s.value for s in record.begun)} and never finished")
        if record.driven_by is not None:
            return _driven(host, problems, evidence, record)
        if record.undoing:  # a revert or a rollback pass: the engine finishes it, as journaled
            return Diagnosis(host, tuple(problems), tuple(evidence), Repair.REVERT,
                             advice=f"the engine finishes {rid}'s {record.undoing} of it, as journaled")
        undo = undo_steps(record.begun, has_previous=record.has_previous)
        return Diagnosis(host, tuple(problems), tuple(evidence), Repair.REVERT, undo,
                         advice=f"the engine's undo of {rid}'s pass; `graylift resume` then does the host again")
    other_version = live.version is not None and record.version is not None and live.version != record.version
    if other_version:
        problems.append(f"on {live.version}, its record says {record.version} ({rid})")
        evidence.append(f"journal: {rid} left it on {record.version}; live: current -> {live.version}")
    if record.attention is not None:
        evidence.append(f"cmdb: needs attention: {record.attention}")
    if not problems:
        if record.attention is not None:
            return Diagnosis(host, (f"marked needing attention ({rid}), but all is well now",), tuple(evidence),
                             Repair.CLEAR)
        return Diagnosis(host)
    if record.driven_by is not None:
        return _driven(host, problems, evidence, record)
    if other_version:
        return Diagnosis(host, tuple(problems), tuple(evidence), Repair.REFUSED,
                         advice=f"`graylift release {app} {record.version} --env {env}` puts it on "
                                f"{record.version} gracefully")
    if live.fresh:
        return Diagnosis(host, tuple(problems), tuple(evidence), Repair.REFUSED,
                         advice=f"nothing is installed: a release of {app} installs it and puts it in traffic")
    return Diagnosis(host, tuple(problems), tuple(evidence), Repair.STEPS, repair_steps(live))


def _driven(host: str, problems: list[str], evidence: list[str], record: Record) -> Diagnosis:
    return Diagnosis(host, tuple(problems), tuple(evidence), Repair.REFUSED,
                     advice=f"{record.driven_by} is live (its lease is fresh): not touched; let it finish, or "
                            "`graylift abort` it")


def repair_steps(live: Live) -> tuple[Step, ...]:
    """The graceful steps that put a host, on its ``current`` release, back to serving, in traffic, unmuted."""
    steps: list[Step] = []
    if not live.serving:
        steps += [Step.TAKE_OUT, Step.QUIET, Step.STOP, Step.START, Step.HEALTH, Step.PUT_BACK]
    elif live.out_of:
        steps.append(Step.PUT_BACK)
    if live.muted_by:
        steps.append(Step.UNMUTE)
    return tuple(steps)
