"""The lab's artifact server: ``python3 -m http.server`` on the bridge address, as a daemon with a pidfile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_artifact_server(workdir: Path, directory: Path, address: str, port: int) -> Path:
    """Serve ``directory`` on ``address:port``; return the pidfile. Waits until the port answers."""
    from graylift.lab.services import wait_for_port

    workdir.mkdir(parents=True, exist_ok=True)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    log, pidfile = workdir / "artifacts.log", workdir / "artifacts.pid"
    with open(log, "ab") as out:
        proc = subprocess.Popen([python, "-m", "http.server", str(port), "--bind", address,
                                 "--directory", str(directory)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    pidfile.write_text(f"{proc.pid}\n")
    wait_for_port(address, port, 15, log=log, pid=proc.pid)
    return pidfile


def reap() -> None:
    """Collect exit statuses of artifact servers this process started and that have been stopped."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]
