"""`graylift hosts ...`: the built-in CMDB, the read-only survey, host health."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graylift.cli.common import ConfigOpt, EnvOpt, Output, OutputOpt, guarded, run_async, service
from graylift.cli.output import console, emit_json, show_table, styled, table
from graylift.errors import UsageError

hosts_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                        help="The built-in CMDB: which hosts run which app.")
# The app comes first, as in every command (`graylift hosts list APP -e ENV`); `--app APP` (the spelling before
# 0.9) still works, hidden, so scripts written for it keep running.
AppFirst = Annotated[str, typer.Argument(metavar="APP", help="The app, as named under `apps:` in the config.")]
MaybeAppFirst = Annotated[str | None, typer.Argument(metavar="APP", show_default=False,
                                                     help="The app, as named under `apps:` in the config.")]
OldAppOpt = Annotated[str | None, typer.Option("--app", metavar="APP", hidden=True)]
HostArg = Annotated[str | None, typer.Argument(metavar="HOST", show_default=False, help="The host's name.")]


def app_only(app: str | None, old_app: str | None, usage: str) -> str:
    """The app of a command of the form ``APP`` (or the older ``--app APP``)."""
    if app is not None and old_app is not None:
        raise UsageError(f"name the app once: `{usage}`")
    named = app if app is not None else old_app
    if named is None:
        raise UsageError(f"name the app: `{usage}`")
    return named


def app_then(first: str, second: str | None, old_app: str | None, usage: str) -> tuple[str, str]:
    """(app, X) for a command of the form ``APP X`` (or the older ``X --app APP``)."""
    if old_app is not None:
        if second is not None:
            raise UsageError(f"name the app once: `{usage}`")
        return old_app, first
    if second is None:
        raise UsageError(f"missing argument: `{usage}`")
    return first, second


@hosts_app.command("import")
def hosts_import(first: AppFirst, second: Annotated[str | None, typer.Argument(metavar="FILE", show_default=False,
                                                                                help="The inventory file.")] = None,
                 env: EnvOpt = ..., dry_run: Annotated[bool, typer.Option(  # type: ignore[assignment]
                     "--dry-run", help="Show what would change; store nothing.")] = False,
                 config: ConfigOpt = None, old_app: OldAppOpt = None) -> None:
    """Replace the app/env host list with a YAML or Ansible (INI/YAML) inventory; show what is added, removed
    and changed. Hosts in maintenance stay in maintenance; hosts a running release uses cannot be removed."""

    def body() -> None:
        app_name, name = app_then(first, second, old_app, "graylift hosts import APP FILE --env ENV")
        file = Path(name)
        gl = service(config)
        gl.check_app(app_name)  # a typo must not create a second app (any env is fine: hosts make it known)
        diff = gl.import_hosts_file(file, app_name, env, dry_run=dry_run)
        for line in diff.lines():
            console.print(line, markup=False)
        done = "would import" if dry_run else "imported"
        console.print(f"{done} {diff.count} host(s) for {app_name} ({env}) from {file}: {diff.summary()}"
                      + (" (dry run: nothing stored)" if dry_run else ""), markup=False)

    guarded(body)


@hosts_app.command("list")
def hosts_list(app_arg: MaybeAppFirst = None, env: EnvOpt = ..., output: OutputOpt = Output.text,  # type: ignore[assignment]
               config: ConfigOpt = None, old_app: OldAppOpt = None) -> None:
    """List an app's hosts in an environment."""

    def body() -> None:
        app_name = app_only(app_arg, old_app, "graylift hosts list APP --env ENV")
        gl = service(config)
        gl.check_app(app_name, env)
        hosts = gl.list_hosts(app_name, env)
        if output is Output.json:
            emit_json([{"name": h.name, "address": h.address, "port": h.port, "user": h.user, "group": h.group,
                        "tags": dict(h.tags), "in_service": h.in_service} for h in hosts])
            return
        rows = table("name", "address", "group", "tags", "in service")
        for h in hosts:
            tags = ",".join(f"{k}={v}" for k, v in sorted(h.tags.items()))
            rows.add_row(h.name, f"{h.address}:{h.port}", h.group, tags,
                         "yes" if h.in_service else styled("no", "yellow"))
        show_table(rows)

    guarded(body)


@hosts_app.command("maintenance")
def hosts_maintenance(first: AppFirst, second: HostArg = None, env: EnvOpt = ...,  # type: ignore[assignment]
                      off: Annotated[bool, typer.Option("--off", help="Put the host back in service.")] = False,
                      config: ConfigOpt = None, old_app: OldAppOpt = None) -> None:
    """Mark a host in maintenance (skipped by releases, counted against the 50% cap) or back in service."""

    def body() -> None:
        app_name, name = app_then(first, second, old_app, "graylift hosts maintenance APP HOST --env ENV [--off]")
        gl = service(config)
        gl.check_app(app_name, env)
        gl.set_maintenance(app_name, env, name, in_service=off)
        console.print(f"{name}: {'in service' if off else 'in maintenance'}")

    guarded(body)


@hosts_app.command("survey")
def hosts_survey(app_arg: MaybeAppFirst = None, env: EnvOpt = ...,  # type: ignore[assignment]
                 version: Annotated[str | None, typer.Option("--version", metavar="VERSION",
                                                             help="The version a release would bring.")] = None,
                 config: ConfigOpt = None, old_app: OldAppOpt = None) -> None:
    """Read-only: what each host runs and serves, the layout found, what a release would do."""

    def body() -> None:
        app_name = app_only(app_arg, old_app, "graylift hosts survey APP --env ENV")
        rows = run_async(service(config).survey(app_name, env, version))
        out = table("host", "layout", "version", "sha256", "serving", "a release would")
        for r in rows:
            out.add_row(r.host.name, r.layout, r.version or "", (r.sha256 or "")[:12], r.serving, r.would)
        show_table(out)

    guarded(body)


@hosts_app.command("clear")
def hosts_clear(first: AppFirst, second: HostArg = None, env: EnvOpt = ...,  # type: ignore[assignment]
                config: ConfigOpt = None, old_app: OldAppOpt = None) -> None:
    """Forget that an earlier release left a host needing attention (after you fixed it by hand)."""

    def body() -> None:
        app_name, name = app_then(first, second, old_app, "graylift hosts clear APP HOST --env ENV")
        gl = service(config)
        gl.check_app(app_name, env)
        if gl.clear_host(app_name, env, name):
            console.print(f"{name}: no longer counted as needing attention")
        else:
            console.print(f"{name}: was not marked as needing attention")

    guarded(body)
