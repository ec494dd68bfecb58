"""Commands are built only when used. The server's (serve, worker, users, tokens, policy, freeze) are also
imported only then: they import the API, the accounts and their database, which `graylift --help` or `graylift
status` must not pay for. The others (:data:`ON_USE`, registered by graylift.cli) are imported with the CLI,
but Typer turns only the one that runs into a click command: building all of them (their parameters read from
their signatures) cost every command about 13 ms of CPU."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer import _click as click  # the click Typer builds its groups on (its own copy)
from typer.core import TyperArgument, TyperCommand, TyperGroup

# name -> (module attribute: a Typer app or a command function, its one line in `graylift --help`)
LAZY = {
    "serve": ("serve", "Serve the HTTP API, the web console and /metrics, and drive releases."),
    "worker": ("worker", "Drive releases (the worker pool), or one release: `worker RELEASE`."),
    "users": ("users_app", "Users of `graylift serve` and their roles per app x env."),
    "tokens": ("tokens_app", "API tokens (for CI and `--server`): shown once, stored hashed."),
    "policy": ("policy_app", "How many approvals a release of an environment needs."),
    "freeze": ("freeze_app", "Freeze windows: no release (rollbacks allowed) unless an admin overrides."),
}
MODULE = "graylift.cli.serve"
ON_USE: dict[str, Callable[..., Any] | typer.Typer] = {}  # name -> command function or sub-app, in help order
C = TypeVar("C", bound="click.Command | None")


class LazyGroup(TyperGroup):
    """A Typer group that builds a command of :data:`ON_USE` or :data:`LAZY` the first time it runs (or is
    completed), importing :data:`MODULE` for the latter; the listing of `graylift --help` builds none."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(dict.fromkeys([*ON_USE, *super().list_commands(ctx), *LAZY]))  # built ones are listed once

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or (cmd_name not in LAZY and cmd_name not in ON_USE):
            return upper_metavars(super().get_command(ctx, cmd_name))
        if cmd_name in ON_USE:
            target: Any = ON_USE[cmd_name]
            if self._listing:  # the listing's line is the help's first sentence, as Typer would make it
                is_app = isinstance(target, typer.Typer)
                return TyperCommand(cmd_name, help=target.info.help if is_app else inspect.getdoc(target))
        else:
            attribute, short_help = LAZY[cmd_name]
            if self._listing:
                return TyperCommand(cmd_name, short_help=short_help)
            target = getattr(importlib.import_module(MODULE), attribute)
        if not isinstance(target, typer.Typer):
            single = typer.Typer(rich_markup_mode=None, add_completion=False,
                                 context_settings={"help_option_names": ["-h", "--help"]})
            single.command(cmd_name)(target)
            target = single
        else:
            target.rich_markup_mode = None
        command = upper_metavars(typer.main.get_command(target))
        command.name = cmd_name
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False


def upper_metavars(command: C) -> C:
    """Every argument in usage lines as ``NAME`` (one style: ``{APP} {VERSION}``, ``[RELEASE]``), also those
    whose function parameter has a lower-case name and no metavar."""
    if command is None:
        return command
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        upper_metavars(sub)
    return command


__all__ = ["LAZY", "ON_USE", "LazyGroup", "upper_metavars"]
