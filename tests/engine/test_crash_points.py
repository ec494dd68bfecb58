"""The crash-point test hook: off without its env var; with it, SIGKILL exactly at the N-th time a point is reached."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys

import pytest

from graylift.engine import crash

SCRIPT = """
from graylift.engine.crash import crash_point
for i in range(1, 4):
    crash_point("after", "haproxy:pyapp.take_out", "web-01")
    crash_point("after", "stop", "web-02")
    print(i, flush=True)
"""


def run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != crash.ENV} | ({crash.ENV: spec} if spec else {})
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(("spec", "printed", "killed"), [
    (None, "1 2 3", False),
    ("after:stop:web-02", "", True),
    ("after:stop:web-02:3", "1 2", True),
    ("after:haproxy:pyapp.take_out:*:2", "1", True),
    ("before:stop:web-02", "1 2 3", False),
    ("after:stop:web-01", "1 2 3", False),
])
def test_a_crash_point_kills_only_where_and_when_it_is_named(spec: str | None, printed: str, killed: bool) -> None:
    done = run(spec)
    assert done.stdout.split() == printed.split()
    assert done.returncode == (-signal.SIGKILL if killed else 0), done.stderr


def test_doctest() -> None:
    assert doctest.testmod(crash).failed == 0
