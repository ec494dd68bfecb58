"""The fencing token a host enforces: the command a controller sends is refused once a newer lease has
touched the host.

A controller's lease check and the command it guards are two moments: one frozen (SIGSTOP, a paused VM)
between them sends the command when it thaws, after another controller took the release over. So every command
of a release goes to the host wrapped (:func:`fenced_command`) with the lease's epoch, which
``Store.claim`` makes greater than every epoch issued before (the token). On the host, under ``flock`` on
``<deploy_dir>/.graylift-fence``:

* the file holds a greater token of the same database: the command is refused (exit :data:`REFUSED_EXIT`, a
  line starting with :data:`MARK` on stderr) and nothing else runs (another graylift database's token is not
  comparable, its leases never fence this one's: it is overwritten);
* else the token is written (if it is not there already) and the command runs, still under the lock (``flock -o``:
  a daemon the command starts does not inherit it), so a newer controller's first command waits for it to end
  and then sees what it did.

A host without util-linux ``flock`` gets the same check without the lock. The check costs the host one
``flock`` and two ``sh`` (no round trip).

    >>> print(fenced_command("/srv/shop", "3f9c", 7, "readlink /srv/shop/current", wait=30)[:66])
    { [ -d /srv/shop ] || mkdir -p /srv/shop; } && if command -v flock
"""

from __future__ import annotations

import shlex

FENCE_FILE = ".graylift-fence"
REFUSED_EXIT = 75
BUSY_EXIT = 76
INCOMPLETE_EXIT = 77
MARK = "graylift-fence:"
INPUT_END = f"{MARK} end of input"

_CHECK = (
    'f=$1 i=$2 t=$3 fi= c=; read -r fi c < "$f"; [ "$fi" = "$i" ] || c=0; case $c in ""|*[!0-9]*) c=0;; esac; '
    f'if [ "$c" -gt "$t" ]; then echo "{MARK} refused: $f holds lease token $c, newer than $t: another controller '
    f'took the release over" >&2; exit {REFUSED_EXIT}; fi; '
    '[ "$fi $c" = "$i $t" ] || echo "$i $t" > "$f" || exit 1; exec sh -c "$4"'
)


def fence_path(deploy_dir: str) -> str:
    return f"{deploy_dir.rstrip('/')}/{FENCE_FILE}"


def sealed_input(text: str) -> str:
    """``text`` as the stdin of a command fenced with ``reads_input``: :data:`INPUT_END` after it, which the
    host checks for and takes off again before the command sees it."""
    return text + INPUT_END


def fenced_command(deploy_dir: str, database: str, token: int, command: str, *, wait: float,
                   reads_input: bool = False) -> str:
    """``command`` for ``sh``, run on the host only if no newer token of ``database`` than ``token`` touched it;
    the lock is waited for ``wait`` seconds at most (then exit :data:`BUSY_EXIT`).

    With ``reads_input``, the command's stdin (sent as :func:`sealed_input` makes it) is read whole before the
    lock is taken: a controller frozen, or a connection stalled, while a script is still going out holds no lock
    on the host, nothing of the script runs before all of it arrived, and input that ends without
    :data:`INPUT_END` (cut short) runs nothing (exit :data:`INCOMPLETE_EXIT`). It reaches the command through a
    pipe from the shell's builtin ``printf``: never in an argv."""
    if not database.isalnum():
        raise ValueError(f"a database id is letters and digits, not {database!r}")
    q = shlex.quote
    f = fence_path(deploy_dir)
    args = f"{q(_CHECK)} graylift-fence {q(f)} {database} {int(token)} {q(command)}"
    root = q(deploy_dir.rstrip("/"))  # made only when missing: a test is a builtin, mkdir a process
    feed = ""
    read = ""
    if reads_input:
        read = (f"s=$(cat; echo x) && s=${{s%x}} && e={q(INPUT_END)} && case $s in *\"$e\") ;; *) "
                f"echo {q(f'{MARK} the input was cut short (no end mark): nothing was run')} >&2; "
                f"exit {INCOMPLETE_EXIT};; esac && ")
        feed = 'printf %s "${s%\"$e\"}" | '
    run = "" if reads_input else "exec "
    return (f"{read}{{ [ -d {root} ] || mkdir -p {root}; }} && if command -v flock >/dev/null 2>&1; "
            f"then {feed}{run}flock -o -w {max(1, round(wait))} -E {BUSY_EXIT} {q(f)} sh -c {args} ; "
            f"else : >> {q(f)} && {feed}{run}sh -c {args} ; fi")


def unwrap(command: str) -> tuple[str, int, str] | None:
    """(database, token, command) of a command :func:`fenced_command` wrapped, else None: for the fakes of a
    host that enforce the fence without a shell (the simulation).

    >>> unwrap(fenced_command("/srv/shop", "3f9c", 7, "start", wait=30))
    ('3f9c', 7, 'start')
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if "graylift-fence" not in words:
        return None
    at = words.index("graylift-fence")
    database, token, inner = words[at + 2:at + 5]
    return database, int(token), inner


def refused(exit_status: int | None, stderr: str) -> str | None:
    """The host's refusal line when a fenced command was refused, else None."""
    if exit_status != REFUSED_EXIT:
        return None
    return next((line.strip() for line in stderr.splitlines() if line.startswith(f"{MARK} refused")), None)
