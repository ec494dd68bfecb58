"""The `graylift` command: Typer commands and rendering only, over graylift.service.

Errors become one line and an exit code in one place (:func:`graylift.cli.common.guarded`; the codes are
:data:`graylift.errors.EXIT_CODES`, documented in docs/cli.md); everything is printed through
:mod:`graylift.cli.output` (user text is never markup). Importing this package stays cheap (no SQLAlchemy,
Alembic or asyncssh): each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from graylift.cli import common, config_cmds, doctor, gates, releases
from graylift.cli.hosts import hosts_app
from graylift.cli.lab import lab_app
from graylift.cli.lazy import ON_USE, LazyGroup
from graylift.client_options import take_server_option

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(cls=LazyGroup, no_args_is_help=True, add_completion=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, context_settings=CONTEXT)
for command in (config_cmds.init, config_cmds.check, releases.plan, releases.release, releases.rollback,
                releases.status, releases.promote, releases.pause, releases.abort, releases.resume, releases.retry,
                releases.history, doctor.doctor, gates.schedule, gates.schedules, gates.unschedule):
    ON_USE[command.__name__] = command  # built into a click command only when it runs (cli/lazy.py)
ON_USE["promote-env"] = gates.promote_env
ON_USE["hosts"], ON_USE["lab"] = hosts_app, lab_app


def _version(value: bool) -> None:
    if value:
        from graylift import __version__

        typer.echo(f"graylift {__version__}")
        raise typer.Exit()


@app.callback()
def _options(config: Annotated[Path | None, typer.Option(
                 "--config", "-c", metavar="FILE", help="Config file for every command (env GRAYLIFT_CONFIG; "
                 "default ./graylift.yaml).")] = None,
             version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                                   help="Show the version and exit.")] = False) -> None:
    """graylift: graceful, durable releases for fleets of VMs and bare-metal hosts.

    Exit codes: 0 ok, 1 the release failed or was rolled back, 2 usage or config error, 3 refused by a rule
    (50% cap, preflight, approval, freeze), 4 controller or database unreachable, 130 interrupted.
    """
    if config is not None:
        os.environ["GRAYLIFT_CONFIG"] = str(config)
    common.freeze_imports()  # the CLI's own modules, imported by now


def main() -> Any:
    sys.argv = [sys.argv[0], *take_server_option(sys.argv[1:])]  # --server URL: the same commands, remotely
    common.FREEZE_IMPORTS = True
    return app()


__all__ = ["app", "main"]
