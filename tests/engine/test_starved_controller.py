"""A controller process stopped (SIGSTOP: starved of CPU, a VM paused) past its own lease deadline while nobody
takes its release over: thawed, it asks the database, finds the lease still its own, renews it there and
finishes the release. Real processes over folder hosts; the taken-over case is tests/engine/test_two_controllers.py.

With a slow health check, it is frozen while the next batch's reads ahead run on their hosts: their answers,
there when it is thawed, are read; the time it did not run does not make them time out (seen in CI: both
hosts skipped as "timed out after 5s", the release paused at the 50% cap)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from graylift.core.state import ReleaseState
from graylift.engine import STALE_AFTER_SECONDS
from graylift.store import Store
from graylift.testing import FileSilencer, FileSwitch
from tests.engine.conftest import hosts_of
from tests.engine.test_two_controllers import controller, create, output, stop_in_batch_1
from tests.engine.world_files import prepare

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("mode", ["", "slow-probe"], ids=["quick-probe", "frozen-with-reads-on-hosts"])
def test_a_controller_stopped_past_its_deadline_that_nobody_replaced_renews_and_finishes(tmp_path: Path,
                                                                                          mode: str) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    world = tmp_path / "world"
    prepare(world)
    hosts = hosts_of(6)
    with Store.open(url) as store:
        first = create(store, "1.0.0", hosts)
        assert controller(url, world, first, "warm-up").wait(60) == 0, output(world, "warm-up")
        rid = create(store, "2.0.0", hosts)
        # a command in flight when it is stopped must not time out: the stall tests the lease, not timeouts
        a = controller(url, world, rid, "controller-a", command_timeout=60, mode=mode)
        try:
            probing = [world / "hosts" / h / "probing" for h in ("h4", "h5")]  # batch 2's reads ahead
            stop_in_batch_1(store, rid, a, on_host=(lambda: any(p.exists() for p in probing)) if mode else None)
            time.sleep(STALE_AFTER_SECONDS + 1)  # past its own deadline and the stale window; nobody claims
            thawed_at = time.time()
            os.kill(a.pid, signal.SIGCONT)
            assert a.wait(60) == 0, output(world, "controller-a")
        finally:
            if a.poll() is None:
                os.kill(a.pid, signal.SIGCONT)
                a.kill()
        rec = store.get_release(rid)
        assert rec.state is ReleaseState.SUCCEEDED, (rec.message, [(r.host, r.state, r.error)
                                                                   for r in store.host_runs(rid)])
        entries = store.journal_entries(rid)
        late = [e for e in entries if e.step == "lease" and e.event == "renewed late"]
        assert len(late) == 1 and late[0].detail["silent_seconds"] >= STALE_AFTER_SECONDS, late
        assert len({(e.owner, e.epoch) for e in entries if e.owner}) == 1  # one driver, one epoch
        assert {e.owner for e in entries if e.owner} == {"controller-a"}
    a_log = (world / "commands-controller-a.log").read_text().splitlines()
    assert any(float(line.split()[0]) >= thawed_at for line in a_log)  # it went on with the hosts
    for host in hosts:
        assert (world / "hosts" / host.name / "current").readlink().name == "2.0.0"
        assert (world / "hosts" / host.name / "running").read_text().strip() == "2.0.0"
    assert FileSwitch(world / "lb").out() == set() and FileSilencer(world / "silences").muted() == set()
