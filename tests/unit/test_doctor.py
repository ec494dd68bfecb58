"""The doctor's decision table (graylift.core.doctor): journal facts + live observations -> what is wrong, and
which steps put it right."""

from __future__ import annotations

import pytest

from graylift.core.doctor import Live, Record, Repair, diagnose
from graylift.core.flow import Step

S = Step
MID_STOP = Record(release_id=7, begun=(S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP), stopped_at=S.STOP,
                  version=None)
DRAINED_MUTED_STOPPED = Live(out_of=("haproxy:web",), muted_by=("alertmanager (silence abc)",), serving=False,
                             health="http: connection refused", version="1.0.0")

CASES = [
    # (record, live, repair, steps, problem fragments)
    (Record(release_id=3, version="1.0.0"), Live(version="1.0.0"), Repair.NOTHING, (), []),
    (MID_STOP, DRAINED_MUTED_STOPPED, Repair.REVERT,
     (S.STOP, S.SWITCH, S.START, S.HEALTH, S.PUT_BACK, S.UNMUTE),
     ["release #7 stopped at stop", "out of traffic in haproxy:web", "muted in alertmanager (silence abc)",
      "not serving (http: connection refused)"]),
    (Record(release_id=7, begun=(S.PRECHECK, S.STAGE, S.MUTE), stopped_at=S.MUTE),
     Live(muted_by=("am",), version="1.0.0"), Repair.REVERT, (S.UNMUTE,), ["release #7 stopped at mute"]),
    (Record(release_id=7, begun=(S.PRECHECK, S.TAKE_OUT), stopped_at=S.TAKE_OUT, has_previous=False),
     Live(fresh=True), Repair.REVERT, (S.UNMUTE,), ["release #7 stopped at take_out"]),
    (Record(release_id=7, begun=(S.STOP, S.SWITCH), stopped_at=S.SWITCH, undoing="revert"),
     Live(out_of=("lb",), serving=False, version="2.0.0"), Repair.REVERT, (), ["release #7 stopped at switch"]),
    (Record(release_id=4, version="1.0.0"), Live(out_of=("haproxy:web", "zookeeper:/x"), version="1.0.0"),
     Repair.STEPS, (S.PUT_BACK,), ["out of traffic in haproxy:web", "out of traffic in zookeeper:/x"]),
    (Record(release_id=4, version="1.0.0"), Live(muted_by=("am",), version="1.0.0"), Repair.STEPS, (S.UNMUTE,),
     ["muted in am"]),
    (Record(release_id=4, version="1.0.0"), Live(serving=False, version="1.0.0"), Repair.STEPS,
     (S.TAKE_OUT, S.QUIET, S.STOP, S.START, S.HEALTH, S.PUT_BACK), ["not serving"]),
    (Record(release_id=4, version="1.0.0"), Live(out_of=("lb",), muted_by=("am",), serving=False, version="1.0.0"),
     Repair.STEPS, (S.TAKE_OUT, S.QUIET, S.STOP, S.START, S.HEALTH, S.PUT_BACK, S.UNMUTE), ["not serving"]),
    (Record(release_id=4, version="1.0.0"), Live(version="2.0.0"), Repair.REFUSED, (),
     ["on 2.0.0, its record says 1.0.0 (release #4)"]),
    (Record(release_id=4), Live(out_of=("lb",), fresh=True), Repair.REFUSED, (), ["out of traffic in lb"]),
    (Record(release_id=4, version="1.0.0", attention="put_back failed"), Live(version="1.0.0"), Repair.CLEAR, (),
     ["marked needing attention (release #4), but all is well now"]),
    (Record(release_id=4, version="1.0.0"), Live(unreadable="connection refused"), Repair.REFUSED, (),
     ["unreadable (connection refused)"]),
]


@pytest.mark.parametrize(("record", "live", "repair", "steps", "problems"), CASES)
def test_the_decision_table(record: Record, live: Live, repair: Repair, steps: tuple[Step, ...],
                            problems: list[str]) -> None:
    d = diagnose("web-03", record, live, app="shop", env="prod")
    assert d.repair is repair
    assert d.steps == steps
    assert d.wrong == bool(problems)
    for fragment in problems:
        assert any(fragment in p for p in d.problems), (fragment, d.problems)


def test_a_host_a_live_release_drives_is_never_repaired() -> None:
    record = Record(release_id=7, begun=MID_STOP.begun, stopped_at=S.STOP, driven_by="release #7 (ctl:42:ab)")
    d = diagnose("web-03", record, DRAINED_MUTED_STOPPED, app="shop", env="prod")
    assert d.repair is Repair.REFUSED and d.steps == ()
    assert d.advice.startswith("release #7 (ctl:42:ab) is live")
    settled = diagnose("web-03", Record(release_id=7, version="1.0.0", driven_by="release #7 (ctl:42:ab)"),
                       Live(out_of=("lb",), version="1.0.0"), app="shop", env="prod")
    assert settled.repair is Repair.REFUSED and settled.problems == ("out of traffic in lb",)


def test_evidence_names_the_journal_and_the_live_survey() -> None:
    d = diagnose("web-03", MID_STOP, DRAINED_MUTED_STOPPED, app="shop", env="prod")
    assert d.evidence[0].startswith("journal: release #7 began precheck, stage, mute, take_out, quiet, stop")
    assert "live: out of traffic in haproxy:web" in d.evidence


def test_another_version_names_the_release_that_puts_it_right() -> None:
    d = diagnose("web-03", Record(release_id=4, version="1.0.0"), Live(version="2.0.0"), app="shop", env="prod")
    assert d.advice.startswith("`graylift release shop 1.0.0 --env prod`")
