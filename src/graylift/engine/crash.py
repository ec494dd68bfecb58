"""A test hook: named crash points where the controller kills itself with SIGKILL.

Off unless ``GRAYLIFT_CRASH_AT`` is set; ``bench/chaos.py`` sets it to hit exactly the gaps a random kill
rarely finds. Its value is ``WHEN:WHAT:HOST[:N]``: die the ``N``-th time (default 1) the engine reaches that
point for that host (``*`` for any host). The points:

* ``before:<step>`` - the step's ``begin`` (and its undo record) is journaled, the step has not run;
* ``after:<step>`` - the step ran on the host, its ``done`` is not journaled yet;
* ``after:<backend>.<method>`` - one backend call returned (``haproxy-pyapp.take_out``,
  ``alertmanager.mute``, ...), the step's other backends are not called yet;
* ``after:switch.<step>`` - a blue-green switch moved one host (``switch.put_back``, ``switch.take_out``,
  ``switch.quiet``), the switch's other hosts are not moved yet.

With a one-command restart (:func:`graylift.steps.restart`, every configured app) stop, switch, start and
health go to the host as one command: ``before:stop`` is before it, ``after:health`` after it; the points
between them (``after:stop`` to ``before:health``) are on the host, where the controller has none.

Example: ``GRAYLIFT_CRASH_AT=after:take_out:pyapp-03:2`` kills the controller once pyapp-03 is out of every
load balancer for the second time (its revert or a rollback), before the journal says so.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "GRAYLIFT_CRASH_AT"

ON_THE_HOST = frozenset({("after", "stop"), ("before", "switch"), ("after", "switch"), ("before", "start"),
                         ("after", "start"), ("before", "health")})
"""(when, step) points inside a one-command restart: never reached by a controller that restarts in one."""

_reached: Counter[tuple[str, str, str]] = Counter()


def crash_point(when: str, what: str, host: str) -> None:
    """Kill this process with SIGKILL if ``GRAYLIFT_CRASH_AT`` names this point (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want_when, want_what, want_host, nth = parse(spec)
    if (want_when, want_what) != (when, what) or want_host not in ("*", host):
        return
    _reached[(when, what, want_host)] += 1
    if _reached[(when, what, want_host)] == nth:
        os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> tuple[str, str, str, int]:
    """``WHEN:WHAT:HOST[:N]`` -> its parts (``WHAT`` may itself hold colons: ``after:haproxy:web.take_out:*``).

    >>> parse("after:haproxy:pyapp.take_out:pyapp-03:2")
    ('after', 'haproxy:pyapp.take_out', 'pyapp-03', 2)
    """
    parts = spec.split(":")
    nth = int(parts.pop()) if len(parts) > 3 and parts[-1].isdigit() else 1
    return parts[0], ":".join(parts[1:-1]), parts[-1], nth
