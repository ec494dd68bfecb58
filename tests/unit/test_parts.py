"""Several shell scripts as one host command (graylift.adapters.transport.parts), run by a real ``sh``."""

from __future__ import annotations

import asyncio
import doctest
import os
import signal
from pathlib import Path

import pytest

from graylift.adapters.transport import parts as parts_module
from graylift.adapters.transport.deploy_dir import CURRENT_MOVED, CURRENT_MOVED_EXIT, current_is_script
from graylift.adapters.transport.local import LocalTransport
from graylift.adapters.transport.parts import Part, run_parts
from graylift.core.model import Host

HOST = Host("h1", "127.0.0.1")


def run(parts: list[Part], timeout: float = 20) -> list[parts_module.PartResult]:
    return asyncio.run(run_parts(LocalTransport(HOST), parts, timeout=timeout))


def test_the_parts_run_in_order_each_with_its_status_output_and_seconds() -> None:
    results = run([Part("one", "echo first; echo to-stderr >&2"), Part("two", "printf 'no newline'"),
                   Part("three", "sleep 0.1; exit 0")])
    assert [(r.name, r.exit_status) for r in results] == [("one", 0), ("two", 0), ("three", 0)]
    assert results[0].output.split() == ["first", "to-stderr"]
    assert results[1].output == "no newline"
    assert results[2].seconds is not None and results[2].seconds >= 0.09  # read on the host, /proc/uptime


def test_the_first_failing_part_ends_the_command_and_nothing_after_it_runs(tmp_path) -> None:
    marker = tmp_path / "ran"
    results = run([Part("stop", "true"), Part("switch", "echo 'release dir missing' >&2; exit 2"),
                   Part("start", f"touch {marker}")])
    assert [(r.name, r.exit_status) for r in results] == [("stop", 0), ("switch", 2)]
    assert results[1].output.strip() == "release dir missing"
    assert not marker.exists()


def test_a_part_reads_no_script_and_a_daemon_it_starts_does_not_hold_the_command(tmp_path) -> None:
    """Each part's stdin is /dev/null: a part that reads stdin gets nothing (the parts after it still run);
    a daemon a part leaves behind (its output elsewhere) does not keep the command open."""
    results = run([Part("reads", "cat; echo read-done"),
                   Part("daemon", f"sleep 30 >/dev/null 2>&1 & echo $! > {tmp_path}/pid"),
                   Part("after", "echo still-here")], timeout=10)
    assert [r.exit_status for r in results] == [0, 0, 0]
    assert results[0].output.strip() == "read-done"
    assert results[2].output.strip() == "still-here"
    os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)


def test_a_part_past_its_timeout_is_stopped_on_the_host_and_ends_the_command(tmp_path) -> None:
    marker = tmp_path / "ran"
    results = run([Part("start", "echo hanging; while :; do sleep 1; done", timeout=1),
                   Part("health", f"touch {marker}")], timeout=30)
    assert [(r.name, r.exit_status, r.timed_out) for r in results] == [("start", 124, True)]
    assert results[0].output.strip() == "hanging"
    assert not marker.exists()


def test_a_part_under_a_timeout_that_starts_a_daemon_returns_and_leaves_it_running(tmp_path) -> None:
    results = run([Part("start", f"sleep 30 >/dev/null 2>&1 & echo $! > {tmp_path}/pid", timeout=5),
                   Part("after", "echo after")], timeout=10)
    assert [(r.exit_status, r.timed_out) for r in results] == [(0, False), (0, False)]
    pid = int((tmp_path / "pid").read_text())
    os.kill(pid, 0)  # still running after the part's timeout process ended
    os.kill(pid, signal.SIGTERM)


def test_doctest() -> None:
    assert doctest.testmod(parts_module).failed == 0


@pytest.mark.parametrize(("link", "ok"), [
    ("releases/1.0.0", True), ("releases/1.0.0/", True), ("./releases/1.0.0", True),
    ("{root}/releases/1.0.0", True), ("{root}/releases/1.0.0/", True),
    ("releases/2.0.0", False), ("releases/1.0.0.old", False), ("/opt/app/releases/1.0.0", False), (None, False),
])
def test_the_restart_checks_on_the_host_that_current_is_where_the_pre_check_found_it(
        tmp_path: Path, link: str | None, ok: bool) -> None:
    """The first part of a one-command restart: 0 where ``current`` still points at the release the stop is
    rendered for (each way a link can name it), else exit 86 saying where it points; the parts after it do
    not run then."""
    root = tmp_path / "app"
    (root / "releases" / "1.0.0").mkdir(parents=True)
    if link is not None:
        (root / "current").symlink_to(link.format(root=root))
    results = run([Part("current", current_is_script(str(root), "1.0.0")), Part("stop", "echo stopped")])
    assert results[0].exit_status == (0 if ok else CURRENT_MOVED_EXIT)
    assert [r.name for r in results] == (["current", "stop"] if ok else ["current"])
    if not ok:
        assert results[0].output.startswith(CURRENT_MOVED)
