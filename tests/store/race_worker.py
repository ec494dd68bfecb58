"""Run by the concurrency tests as a separate process: waits for a start time, then does one thing.

Usage: python race_worker.py URL START_EPOCH ACTION [ARG]; prints one result line.
"""

from __future__ import annotations

import sys
import time

from graylift.core.model import Host
from graylift.errors import ReleaseConflict
from graylift.store import Store


def main() -> None:
    url, start, action = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    time.sleep(max(0.0, start - time.time()))
    store = Store.open(url)
    try:
        if action == "open":
            print("opened")
        elif action == "create":
            try:
                rec = store.create_release(
                    app="order-service",
                    env="prod",
                    kind="release",
                    version=arg,
                    previous_version=None,
                    plan={},
                    config={},
                    started_by=arg,
                    host_runs=[(Host("h1", "10.213.0.1"), 0, None)],
                )
                print(f"created {rec.id}")
            except ReleaseConflict as exc:
                print(f"conflict {exc}")
        elif action == "claim":
            print(
                "claimed" if store.claim(int(arg), f"owner-{time.time_ns()}", stale_after=60) else "refused"
            )
        elif action == "journal":
            for i in range(200):
                store.journal(int(arg), "h1", "step", "start", {"i": i})
            print("journaled")
    finally:
        store.close()


if __name__ == "__main__":
    main()
