"""``python cpu_run.py OUT.json -- ARGV...``: run a tool and write the CPU seconds of its whole process tree.

The wrapper is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so processes the tool leaves behind (ssh
ControlPersist masters) are reparented to it; once the tool exits they are terminated and reaped, and
RUSAGE_CHILDREN then holds the user + system CPU of every process of the tree. The wrapper's own CPU is not
counted. Exit status: the tool's.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def main() -> int:
    out, argv = sys.argv[1], sys.argv[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started_at, started = time.time(), time.monotonic()
    rc = subprocess.run(argv, check=False).returncode
    wall = time.monotonic() - started
    for pid in children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"rc": rc, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "started_at": started_at,
                   "ended_at": started_at + wall}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
