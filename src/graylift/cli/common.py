"""What every command shares: the common options, the service, and ``guarded`` (errors -> exit codes, once).

Nothing here imports the service, SQLAlchemy or asyncssh at import time: ``graylift --help`` stays cheap.
"""

from __future__ import annotations

import gc
import getpass
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from graylift.cli.output import console, err, error, warn  # console, err: re-exported for the commands
from graylift.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, GrayliftError, UsageError

if TYPE_CHECKING:
    from graylift.client import RemoteGraylift
    from graylift.service import Graylift, ReleaseRecord

    Service = Graylift | RemoteGraylift
    """What a command talks to: this machine's service, or a server's API (``--server``). Typed as either, so
    mypy checks each call against both; a command that needs this machine's asks :func:`local_service`."""

T = TypeVar("T")
DEBUG_ENV = "GRAYLIFT_DEBUG"


class Output(StrEnum):
    text = "text"
    json = "json"


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", metavar="FILE", help="Config file (env "
                                                "GRAYLIFT_CONFIG; default ./graylift.yaml).")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", metavar="ENV",
                                     help="Environment: dev, test, staging, beta, prod, ...")]
MaybeEnvOpt = Annotated[str | None, typer.Option("--env", "-e", metavar="ENV",
                                                 help="Environment (with an app name instead of a release id).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Block with live progress; exit 0 only on success.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", metavar="FORMAT",
                                           help="text (default) or json (schema: docs/cli.md).")]
AppArg = Annotated[str, typer.Argument(metavar="APP", help="The app, as named under `apps:` in the config.")]
VersionArg = Annotated[str, typer.Argument(metavar="VERSION", help="The version to release.")]
RefArg = Annotated[str, typer.Argument(metavar="RELEASE", help="A release id, or an app name with --env (its "
                                                                  "active release, else its last one).")]


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body: every error becomes one ``error:`` line and its exit code (graylift.errors).

    A GrayliftError carries its code (2 usage/config, 3 refused by a rule, 4 unreachable, 1 otherwise); an
    unreadable file is a usage error; anything unexpected is one line too (GRAYLIFT_DEBUG=1 re-raises it).
    """
    try:
        return fn()
    except (typer.Exit, typer.Abort):
        raise
    except GrayliftError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        error("the release stays where it is; `graylift resume` goes on", label="interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (a bug: {DEBUG_ENV}=1 shows where; please report it)")
        raise typer.Exit(EXIT_FAILED) from None


# Set by graylift.cli.main, so only for the `graylift` process itself (not a test's or the API's in-process
# calls): what it imports at start-up lives as long as the process, so the cyclic garbage collector is told
# so (gc.freeze: never scanned again) and is off while the service and SQLAlchemy are imported. Every full
# collection during and after start-up scanned all of it (docs/cli.md "Start-up": `graylift status` 0.376 s
# of CPU before, 0.296 s after). Each freeze happens once: later objects are collected as usual.
FREEZE_IMPORTS = False
_frozen: set[str] = set()


def freeze_imports(what: str = "cli") -> None:
    """What was imported until now stays for the life of the process: out of the collector's sight."""
    if FREEZE_IMPORTS and what not in _frozen:
        _frozen.add(what)
        gc.freeze()


@contextmanager
def imported_for_good() -> Iterator[None]:
    """Import the service (the store, SQLAlchemy) with the collector off, then freeze it (once a process)."""
    if not FREEZE_IMPORTS or "service" in _frozen or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        freeze_imports("service")
        gc.enable()


def run_async(awaitable: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with asyncio imported only by the commands that talk to hosts."""
    import asyncio

    return asyncio.run(awaitable)


def service(config: Path | None) -> Service:
    """The service: a server's API with ``--server URL`` (or GRAYLIFT_SERVER, or the client file), else this
    machine's. No command but `resume` (and a worker) ever takes a release over."""
    remote = _remote()
    return remote if remote is not None else local_service(config)


def local_service(config: Path | None, refuse_remote: str | None = None) -> Graylift:
    """This machine's service (its config and state database). ``refuse_remote``: the one line saying why the
    command must run where the state database is, an error when a server is named; without it a named server
    is not consulted (`serve` and `worker` are the server). A state database created new is said (a wrong path
    must not look like an empty history)."""
    if refuse_remote is not None and _server_named():
        from graylift.client_options import CLIENT_FILE, SERVER_ENV

        raise UsageError(f"{refuse_remote}: run it where the state database is, without --server "
                         f"({SERVER_ENV} or {CLIENT_FILE} name a server here)")
    with imported_for_good():
        from graylift.service import Graylift

    gl = Graylift(config)
    gl.on_new_state = lambda path: warn(f"created a new, empty state database {path} (GRAYLIFT_DB or `state:` "
                                        "in the config name another)")
    return gl


def _server_named() -> bool:
    from graylift.client_options import CLIENT_FILE, SERVER_ENV

    return bool(os.environ.get(SERVER_ENV)) or CLIENT_FILE.expanduser().exists()


def _remote() -> RemoteGraylift | None:
    if not _server_named():
        return None  # no server named: do not even import the HTTP client
    from graylift.client import remote_from_env

    remote: RemoteGraylift | None = remote_from_env()
    return remote


def emergency(gl: Service) -> None:
    """Say, once, that a broken config is being worked around (the release's own snapshot is used)."""
    if gl.config_problem:
        first = gl.config_problem.splitlines()[0]
        warn(f"the config does not load ({first}); working from the state database alone")


def find_release(gl: Service, ref: str, env: str | None) -> ReleaseRecord:
    """A release by id, or the active (else last) release of ``APP --env ENV``."""
    if ref.isdigit() or env is None:
        return gl.release(release_id(ref))
    gl.check_app(ref, env)
    return gl.find(ref, env)


def who() -> str:
    return os.environ.get("GRAYLIFT_USER") or getpass.getuser()


def release_id(ref: str) -> int:
    if not ref.isascii() or not ref.isdigit() or len(ref) > 18:
        raise UsageError(f"{ref!r} is not a release id (a number from `graylift history APP --env ENV`; or give "
                         "the app name with --env ENV)")
    return int(ref)


__all__ = ["AppArg", "ConfigOpt", "EnvOpt", "MaybeEnvOpt", "Output", "OutputOpt", "RefArg", "WaitOpt",
           "console", "emergency", "err", "find_release", "guarded", "release_id", "run_async", "service", "who"]
