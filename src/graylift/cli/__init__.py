"""The `graylift` command: Typer commands and rendering only, over graylift.service.

Errors become messages and exit codes in one place (:func:`graylift.cli.common.guarded`).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from graylift.cli import config_cmds, doctor, releases, serve
from graylift.cli.hosts import hosts_app
from graylift.cli.lab import lab_app
from graylift.client import take_server_option

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="graylift: graceful, durable releases for fleets of VMs and bare-metal hosts.")
app.add_typer(hosts_app, name="hosts")
app.add_typer(lab_app, name="lab")
for command in (config_cmds.init, config_cmds.check, releases.plan, releases.release, releases.rollback,
                releases.status, releases.promote, releases.pause, releases.abort, releases.resume, releases.retry,
                releases.history):
    app.command()(command)
app.command()(doctor.doctor)
app.command()(serve.serve)
app.command("worker")(serve.worker)  # `worker RELEASE` as before (hand-off), `worker` alone: the pool
app.add_typer(serve.users_app, name="users")
app.add_typer(serve.tokens_app, name="tokens")
app.add_typer(serve.policy_app, name="policy")
app.add_typer(serve.freeze_app, name="freeze")


def main() -> Any:
    sys.argv = [sys.argv[0], *take_server_option(sys.argv[1:])]  # --server URL: the same commands, remotely
    # the global --config may come before the command: move it after, where each command takes it
    argv = sys.argv[1:]
    if len(argv) > 2 and argv[0] in ("-c", "--config"):
        sys.argv = [sys.argv[0], *argv[2:], argv[0], argv[1]]
    return app()


__all__ = ["app", "main"]
