"""The host-side fencing token (core/fence.py), run by a real ``sh`` on a folder standing for a host."""

from __future__ import annotations

import doctest
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

import graylift.core.fence as fence
from graylift.core.fence import (
    BUSY_EXIT,
    FENCE_FILE,
    INCOMPLETE_EXIT,
    MARK,
    REFUSED_EXIT,
    fenced_command,
    refused,
    sealed_input,
)


def run(deploy: Path, token: int, command: str, *, wait: float = 5, path: str | None = None, database: str = "db1"
        ) -> subprocess.CompletedProcess[str]:
    env = os.environ | ({"PATH": path} if path is not None else {})
    return subprocess.run(["/bin/sh", "-c", fenced_command(str(deploy), database, token, command, wait=wait)],
                          capture_output=True, text=True, env=env, timeout=30)


def test_doctests() -> None:
    assert doctest.testmod(fence).failed == 0


def test_a_newer_token_is_written_and_an_older_one_refused_before_anything_runs(tmp_path: Path) -> None:
    deploy = tmp_path / "srv" / "shop"  # not there yet: made
    first = run(deploy, 5, f"echo 'it''s' $0 > {deploy}/out")
    assert first.returncode == 0 and (deploy / FENCE_FILE).read_text() == "db1 5\n"
    assert (deploy / "out").read_text() == "its sh\n"  # the command ran as written, quotes and all
    assert run(deploy, 7, "exit 3").returncode == 3  # the command's own status; the token is 7 from now on
    assert (deploy / FENCE_FILE).read_text() == "db1 7\n"
    late = run(deploy, 5, f"touch {deploy}/late")
    assert late.returncode == REFUSED_EXIT and not (deploy / "late").exists()
    line = refused(late.returncode, late.stderr)
    assert line is not None and "holds lease token 7, newer than 5" in line
    assert run(deploy, 7, "true").returncode == 0  # the same token again: runs
    assert refused(REFUSED_EXIT, "some other program's exit 75") is None


def test_another_databases_token_does_not_fence_this_ones(tmp_path: Path) -> None:
    """Epochs of two graylift databases are not comparable (a lab set up by one, a release by another): the
    other database's token is replaced, never compared."""
    deploy = tmp_path / "app"
    assert run(deploy, 40, "true", database="other").returncode == 0
    assert run(deploy, 2, f"touch {deploy}/ran").returncode == 0 and (deploy / "ran").exists()
    assert (deploy / FENCE_FILE).read_text() == "db1 2\n"
    assert run(deploy, 1, "true").returncode == REFUSED_EXIT
    with pytest.raises(ValueError, match="letters and digits"):
        fenced_command(str(deploy), "a b", 1, "true", wait=1)


def test_without_flock_the_check_still_refuses(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a host without util-linux: sh, mkdir and the builtins only
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "touch"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["sh", "-c", f"command -v {tool}"], text=True).strip())
    deploy = tmp_path / "app"
    assert run(deploy, 9, "true", path=str(bin_dir)).returncode == 0
    assert run(deploy, 8, f"touch {deploy}/late", path=str(bin_dir)).returncode == REFUSED_EXIT
    assert not (deploy / "late").exists()


def test_a_newer_controller_waits_for_the_command_under_way_and_a_daemon_holds_no_lock(tmp_path: Path) -> None:
    deploy = tmp_path / "app"
    # a command that starts a daemon returns at once, and the daemon does not keep the host's lock
    daemon = run(deploy, 3, f"sleep 30 >/dev/null 2>&1 </dev/null & echo $! > {deploy}/pid")
    assert daemon.returncode == 0
    try:
        began = time.monotonic()
        assert run(deploy, 3, "true", wait=2).returncode == 0 and time.monotonic() - began < 2
    finally:
        os.kill(int((deploy / "pid").read_text()), 9)
    # a slow command of the old lease, then the new lease's first command: it runs only after the slow one ended
    slow = threading.Thread(target=run, args=(deploy, 3, f"sleep 1; echo old >> {deploy}/order"))
    slow.start()
    time.sleep(0.3)
    assert run(deploy, 4, f"echo new >> {deploy}/order").returncode == 0
    slow.join()
    assert (deploy / "order").read_text().split() == ["old", "new"]
    busy = threading.Thread(target=run, args=(deploy, 4, "sleep 2"))
    busy.start()
    time.sleep(0.3)
    gave_up = run(deploy, 4, f"touch {deploy}/never", wait=1)  # waited its timeout for the lock: nothing run
    busy.join()
    assert gave_up.returncode == BUSY_EXIT and not (deploy / "never").exists()


def start_with_input(deploy: Path, token: int, command: str, *, wait: float = 5) -> subprocess.Popen[str]:
    argv = ["/bin/sh", "-c", fenced_command(str(deploy), "db1", token, command, wait=wait, reads_input=True)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_script_on_stdin_is_read_whole_before_the_lock_and_the_check(tmp_path: Path) -> None:
    """A controller frozen (or its connection stalled) while its script is still going out holds nothing on
    the host: the next controller's commands run meanwhile, nothing of the script runs before it arrived whole,
    and once it has, the fence judges it (refused here: a newer token touched the host)."""
    deploy = tmp_path / "app"
    assert run(deploy, 3, "true").returncode == 0
    script = sealed_input(f"touch {deploy}/first-half\ntouch {deploy}/second-half\n")
    cut = script.index("\n") + 1
    with start_with_input(deploy, 3, "sh -s") as old:
        try:
            assert old.stdin is not None
            old.stdin.write(script[:cut])
            old.stdin.flush()
            time.sleep(0.3)
            began = time.monotonic()
            new = run(deploy, 4, f"touch {deploy}/new", wait=2)
            assert new.returncode == 0 and time.monotonic() - began < 2, new.stderr  # not kept out by the lock
            assert not (deploy / "first-half").exists()  # half a script ran nothing
            _, err = old.communicate(script[cut:], timeout=10)
        finally:
            old.kill()
    assert old.returncode == REFUSED_EXIT and "newer than 3" in err
    assert not (deploy / "first-half").exists() and not (deploy / "second-half").exists()
    assert (deploy / FENCE_FILE).read_text() == "db1 4\n"


def test_a_script_cut_short_runs_nothing_and_touches_no_token(tmp_path: Path) -> None:
    deploy = tmp_path / "app"
    assert run(deploy, 3, "true").returncode == 0
    cut_short = start_with_input(deploy, 5, "sh -s")
    _, err = cut_short.communicate(sealed_input(f"touch {deploy}/ran\n")[:-3], timeout=10)
    assert cut_short.returncode == INCOMPLETE_EXIT and not (deploy / "ran").exists()
    assert err.startswith(f"{MARK} ") and "cut short" in err and "nothing was run" in err, err
    assert (deploy / FENCE_FILE).read_text() == "db1 3\n"  # the check never ran: no token written


@pytest.mark.parametrize("text", ["", "no newline", "a\n\n\n", "  lead and trail  \n\t\n", "x\\ny $HOME `id` 'q\"\n",
                                  "user = \"ops:s3cr3t\"\n"])
def test_the_input_reaches_the_command_exactly(tmp_path: Path, text: str) -> None:
    deploy = tmp_path / "app"
    proc = start_with_input(deploy, 1, f"cat > {deploy}/got")
    _, err = proc.communicate(sealed_input(text), timeout=10)
    assert proc.returncode == 0, err
    assert (deploy / "got").read_bytes() == text.encode()


def test_without_flock_a_script_is_read_whole_first_too(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "cat", "touch"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["sh", "-c", f"command -v {tool}"], text=True).strip())
    deploy = tmp_path / "app"
    env = os.environ | {"PATH": str(bin_dir)}
    command = fenced_command(str(deploy), "db1", 2, "sh -s", wait=5, reads_input=True)
    done = subprocess.run(["/bin/sh", "-c", command], input=sealed_input(f"touch {deploy}/ran\n"), env=env,
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and (deploy / "ran").exists(), done.stderr
    short = subprocess.run(["/bin/sh", "-c", command], input=f"touch {deploy}/late\n", env=env,
                           capture_output=True, text=True, timeout=10)
    assert short.returncode == INCOMPLETE_EXIT and not (deploy / "late").exists()


def test_the_input_is_in_no_processs_argv(tmp_path: Path) -> None:
    deploy, secret = tmp_path / "app", "s3cr3t-7f0c2a"
    with start_with_input(deploy, 1, f"sleep 0.6; cat > {deploy}/got") as proc:
        try:
            assert proc.stdin is not None
            proc.stdin.write(sealed_input(f'user = "ops:{secret}"\n'))
            proc.stdin.close()
            time.sleep(0.3)  # read, checked, and fed to the command, which is still asleep
            seen = []
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes())
                except OSError:
                    continue
            assert seen and not [c for c in seen if secret.encode() in c]
            assert proc.wait(10) == 0
        finally:
            proc.kill()
    assert secret in (deploy / "got").read_text()
