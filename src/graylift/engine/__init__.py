"""The engine: the release loop (:mod:`.loop`), one host's passes (:mod:`.hosts`), the lease (:mod:`.lease`).

Its names load on first use: :mod:`.lease` alone (what ``graylift status`` needs to tell a live controller from a
dead one) does not pull in the loop, the steps and every adapter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graylift.engine.hosts import HostRunner, StepFailed
    from graylift.engine.lease import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, Lease, controller_id, owner_is_dead
    from graylift.engine.loop import Engine

_WHERE = {"HostRunner": "hosts", "StepFailed": "hosts", "HEARTBEAT_SECONDS": "lease", "STALE_AFTER_SECONDS": "lease",
          "Lease": "lease", "controller_id": "lease", "owner_is_dead": "lease", "Engine": "loop"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'graylift.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graylift.engine.{module}"), name)


__all__ = ["HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS", "Engine", "HostRunner", "Lease", "StepFailed",
           "controller_id", "owner_is_dead"]
