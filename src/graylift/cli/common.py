"""What every command shares: the consoles, the common options, and ``guarded`` (errors -> exit codes, once)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from graylift.client import remote_from_env
from graylift.errors import ConfigError, GrayliftError, PlanError, StateError
from graylift.service import Graylift

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file (env GRAYLIFT_CONFIG; "
                                                "default ./graylift.yaml).")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: dev, test, staging, beta, prod, ...")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Block with live progress; exit 0 only on success.")]


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; a GrayliftError becomes a one-line message and exit code 2 (input) or 1."""
    try:
        return fn()
    except (ConfigError, PlanError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except GrayliftError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: the release stays where it is; `graylift resume` goes on")
        raise typer.Exit(130) from None


def service(config: Path | None) -> Graylift:
    """The service: a server's API with ``--server URL`` (or GRAYLIFT_SERVER), else this machine's. No command
    but `resume` (and a worker) ever takes a release over."""
    remote: Graylift | None = remote_from_env()
    return remote or Graylift(config)


def who() -> str:
    return os.environ.get("GRAYLIFT_USER") or getpass.getuser()


def release_id(ref: str) -> int:
    if not ref.isdigit() or len(ref) > 18:
        raise StateError(f"{ref!r} is not a release id (a number from `graylift history APP --env ENV`)")
    return int(ref)
