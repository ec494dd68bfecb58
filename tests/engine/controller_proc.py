"""One controller process over folder hosts and file-backed backends (for the two-controller tests).

    python -m tests.engine.controller_proc DB_URL WORLD_DIR RELEASE_ID OWNER [COMMAND_TIMEOUT [MODE]]

MODE: ``one-command``: the restart as one command; ``stalled``: the restart as one command, the first one on
h2 or h3 stalled half-sent (world_files.StallingFleet).
``slow-probe``: the health check takes a second on the host.

Every command it runs on a host is logged with its start time in WORLD_DIR/commands-OWNER.log.
Exit 0 when the release finished or paused, 3 when the controller lost its lease.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from graylift.engine import Engine
from graylift.errors import LeaseLost
from graylift.store import Store
from tests.engine.world_files import file_fleet


def main() -> int:
    url, world, release_id, owner = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    mode = sys.argv[6] if len(sys.argv) > 6 else ""
    fleet = file_fleet(world, log=world / f"commands-{owner}.log", command_timeout=timeout,
                       one_command=mode in ("one-command", "stalled"), stall_input=mode == "stalled",
                       slow_probe=mode == "slow-probe")

    async def factory(_: Any) -> Any:
        return fleet

    with Store.open(url) as store:
        try:
            rec = asyncio.run(Engine(store, factory, owner=owner).drive(release_id))
        except LeaseLost as exc:
            print(f"lease lost: {exc}", flush=True)
            return 3
    print(f"release #{rec.id} {rec.state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
