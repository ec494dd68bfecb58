"""`ansible-inventory -i FILE --list` (or `ansible all -i FILE -m raw -a true -vvv`) for many files for the
price of one start.

Imports ansible-core once (most of a start's cost), then forks one child per file that runs the command's own
``main`` (what the ansible-inventory / ansible scripts call) with those arguments, its stdout and stderr in
files and its exit code as the child's. Nothing is shared between files: each child starts from the same
freshly imported state.

    python ansible_many.py inventory|connect OUTDIR FILE...  ->  OUTDIR/<n>.out, OUTDIR/<n>.err, OUTDIR/<n>.rc
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ansible.cli.adhoc import main as ansible
from ansible.cli.inventory import main as ansible_inventory

COMMANDS = {
    "inventory": lambda path: ansible_inventory(["ansible-inventory", "-i", path, "--list"]),
    "connect": lambda path: ansible(["ansible", "all", "-i", path, "-m", "raw", "-a", "true", "-vvv"]),
}


def start(command: str, path: str, out: Path, number: int) -> int:
    """Fork the child that runs ``command`` for ``path``; its pid."""
    pid = os.fork()
    if pid == 0:  # the child: it is `ansible-inventory -i path --list` (or `ansible all -i path ...`)
        code = 1
        try:
            os.dup2(os.open(out / f"{number}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(out / f"{number}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            COMMANDS[command](path)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def run_all(command: str, files: list[str], out: Path, at_once: int = 2) -> None:
    """Every file, ``at_once`` children at a time; OUTDIR/<n>.rc gets each exit code."""
    running: dict[int, int] = {}
    for number, path in enumerate(files):
        if len(running) >= at_once:
            pid, status = os.wait()
            (out / f"{running.pop(pid)}.rc").write_text(str(os.waitstatus_to_exitcode(status)))
        running[start(command, path, out, number)] = number
    while running:
        pid, status = os.wait()
        (out / f"{running.pop(pid)}.rc").write_text(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    run_all(sys.argv[1], sys.argv[3:], Path(sys.argv[2]))
