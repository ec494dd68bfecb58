"""The engine: the release loop (:mod:`.loop`), one host's passes (:mod:`.hosts`), the lease (:mod:`.lease`)."""

from graylift.engine.hosts import HostRunner, StepFailed
from graylift.engine.lease import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, Lease, controller_id, owner_is_dead
from graylift.engine.loop import Engine

__all__ = ["HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS", "Engine", "HostRunner", "Lease", "StepFailed",
           "controller_id", "owner_is_dead"]
