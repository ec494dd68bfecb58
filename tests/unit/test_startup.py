"""Start-up stays cheap (issue 9 item 10): what `graylift --help` and `graylift status` import, the schema check
that spares Alembic, and asyncssh imported without running ldconfig, gcc or ld. (Timings: bench/startup.py.)"""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from graylift.adapters.transport._asyncssh import find_library
from graylift.store.db import MIGRATIONS_DIR, head_revision

HEAVY = ("sqlalchemy", "alembic", "asyncssh", "httpx", "graylift.config", "graylift.wiring", "graylift.engine.loop",
         "graylift.adapters", "graylift.auth", "graylift.api")


def imported_by(args: list[str], cwd: Path) -> set[str]:
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from graylift.cli import app
        result = CliRunner().invoke(app, {args!r})
        assert result.exit_code == 0, result.output
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True,
                          env={"HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    return set(done.stdout.split())


def test_help_and_status_import_nothing_heavy(tmp_path: Path) -> None:
    assert imported_by(["--help"], tmp_path) == set()
    (tmp_path / "graylift.yaml").write_text("state: sqlite:///state.db\napps: {}\n")
    assert "alembic" in imported_by(["status"], tmp_path)  # a new database: its schema is made
    assert imported_by(["status"], tmp_path) == {"sqlalchemy"}  # then: the state database, and nothing else


def test_the_head_revision_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


@pytest.mark.parametrize("name", ["c", "nettle", "oqs", "liboqs", "no-such-library-here"])
def test_the_quiet_library_lookup_agrees_with_ctypes(name: str) -> None:
    assert find_library(name) == ctypes.util.find_library(name)


def test_asyncssh_is_imported_without_a_subprocess(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    if subprocess.run(["which", "strace"], capture_output=True).returncode != 0:
        pytest.skip("strace is not installed")
    subprocess.run(["strace", "-f", "-e", "trace=execve", "-o", str(trace), sys.executable, "-c",
                    "import graylift.adapters.transport.ssh"], check=True, capture_output=True)
    assert trace.read_text().count("execve(") == 1  # python itself


def test_asyncssh_is_imported_without_a_warning_on_stderr() -> None:
    """cryptography 51 warns at every use of its DSA names, and asyncssh uses them at import: a graylift command
    that talks SSH printed ten lines of warnings before its own output."""
    done = subprocess.run([sys.executable, "-W", "default", "-c",
                           "import graylift.adapters.transport.ssh as m; m.asyncssh.import_private_key"],
                          capture_output=True, text=True, check=True)
    assert done.stderr == ""


def collector_after(code: str, cwd: Path) -> tuple[int, bool]:
    """(objects frozen out of the collector's sight, is the collector on) after ``code`` ran in a new process."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + textwrap.dedent("""
        import gc
        print(gc.get_freeze_count(), gc.isenabled())
    """)], cwd=cwd, capture_output=True, text=True, check=True, env={"HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    frozen, enabled = done.stdout.splitlines()[-1].split()  # the command's own output comes first
    return int(frozen), enabled == "True"


def test_the_graylift_process_freezes_what_it_imported_and_collects_after(tmp_path: Path) -> None:
    """`graylift` itself keeps its start-up imports out of the collector's sight (bench/startup.py: about 15%
    of `graylift status`), and the collector is on again when the command runs: a worker or a release that
    runs for hours collects its garbage."""
    (tmp_path / "graylift.yaml").write_text("state: sqlite:///state.db\napps: {}\n")
    frozen, enabled = collector_after("""
        import sys
        from graylift.cli import main
        sys.argv = ["graylift", "status"]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        import sqlalchemy
        assert sqlalchemy  # imported by status, before the freeze
    """, tmp_path)
    assert frozen > 20_000 and enabled  # SQLAlchemy, the service and the CLI: about 55,000 objects here


def test_commands_run_in_process_leave_the_collector_alone(tmp_path: Path) -> None:
    """Tests and the API call the commands in their own process: nothing of theirs is frozen."""
    (tmp_path / "graylift.yaml").write_text("state: sqlite:///state.db\napps: {}\n")
    frozen, enabled = collector_after("""
        from typer.testing import CliRunner
        from graylift.cli import app
        assert CliRunner().invoke(app, ["status"]).exit_code == 0
    """, tmp_path)
    assert (frozen, enabled) == (0, True)


def test_only_the_command_that_runs_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer reads a command's parameters from its signature when it builds it: for the one that runs, not for
    every command (about 13 ms of CPU on every start before)."""
    import typer.main
    from typer.testing import CliRunner

    from graylift.cli import app

    built: list[str] = []
    real = typer.main.get_command_from_info

    def counting(*args: Any, **kwargs: Any) -> Any:
        info = kwargs.get("command_info") or args[0]
        built.append(info.name or info.callback.__name__)
        return real(*args, **kwargs)

    monkeypatch.setattr(typer.main, "get_command_from_info", counting)
    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0 and "promote-env" in listing.stdout and built == []
    assert CliRunner().invoke(app, ["status", "--help"]).exit_code == 0
    assert built == ["status"]
    built.clear()
    assert CliRunner().invoke(app, ["hosts", "list", "--help"]).exit_code == 0
    assert "list" in built and "status" not in built
