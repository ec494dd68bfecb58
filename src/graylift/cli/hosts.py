"""`graylift hosts ...`: the built-in CMDB, the read-only survey, host health."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graylift.cli.common import ConfigOpt, EnvOpt, Output, OutputOpt, check_app, guarded, run_async, service
from graylift.cli.output import console, emit_json, show_table, styled, table
from graylift.errors import UsageError

hosts_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                        help="The built-in CMDB: which hosts run which app.")
AppOpt = Annotated[str, typer.Option("--app", metavar="APP", help="The app, as named under `apps:` in the config.")]


@hosts_app.command("import")
def hosts_import(file: Path, app_name: AppOpt, env: EnvOpt, config: ConfigOpt = None,
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; store nothing.")]
                 = False) -> None:
    """Replace the app/env host list with a YAML or Ansible (INI/YAML) inventory; show what is added, removed
    and changed. Hosts in maintenance stay in maintenance; hosts a running release uses cannot be removed."""

    def body() -> None:
        gl = service(config)
        check_app(gl, app_name)  # a typo must not create a second app (any env is fine: hosts make it known)
        diff = gl.import_hosts_file(file, app_name, env, dry_run=dry_run)
        for line in diff.lines():
            console.print(line, markup=False)
        done = "would import" if dry_run else "imported"
        console.print(f"{done} {diff.count} host(s) for {app_name} ({env}) from {file}: {diff.summary()}"
                      + (" (dry run: nothing stored)" if dry_run else ""), markup=False)

    guarded(body)


@hosts_app.command("list")
def hosts_list(app_name: AppOpt, env: EnvOpt, output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """List an app's hosts in an environment."""

    def body() -> None:
        gl = service(config)
        check_app(gl, app_name, env)
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
def hosts_maintenance(name: Annotated[str, typer.Argument(metavar="HOST")], app_name: AppOpt, env: EnvOpt,
                      off: Annotated[bool, typer.Option("--off", help="Put the host back in service.")] = False,
                      config: ConfigOpt = None) -> None:
    """Mark a host in maintenance (skipped by releases, counted against the 50% cap) or back in service."""

    def body() -> None:
        gl = service(config)
        check_app(gl, app_name, env)
        gl.set_maintenance(app_name, env, name, in_service=off)
        console.print(f"{name}: {'in service' if off else 'in maintenance'}")

    guarded(body)


@hosts_app.command("survey")
def hosts_survey(env: EnvOpt, app_arg: Annotated[str | None, typer.Argument(metavar="APP", help="The app (or --app, "
                                                                              "as in every hosts command).")] = None,
                 app_name: Annotated[str | None, typer.Option("--app", metavar="APP", help="The app.")] = None,
                 version: Annotated[str | None, typer.Option("--version", metavar="VERSION",
                                                             help="The version a release would bring.")] = None,
                 config: ConfigOpt = None) -> None:
    """Read-only: what each host runs and serves, the layout found, what a release would do."""

    def body() -> None:
        if (app_arg is None) == (app_name is None):
            raise UsageError("name the app once: `graylift hosts survey --app APP --env ENV`")
        rows = run_async(service(config).survey(app_name or str(app_arg), env, version))
        out = table("host", "layout", "version", "sha256", "serving", "a release would")
        for r in rows:
            out.add_row(r.host.name, r.layout, r.version or "", (r.sha256 or "")[:12], r.serving, r.would)
        show_table(out)

    guarded(body)


@hosts_app.command("clear")
def hosts_clear(name: Annotated[str, typer.Argument(metavar="HOST")], app_name: AppOpt, env: EnvOpt,
                config: ConfigOpt = None) -> None:
    """Forget that an earlier release left a host needing attention (after you fixed it by hand)."""

    def body() -> None:
        gl = service(config)
        check_app(gl, app_name, env)
        if gl.clear_host(app_name, env, name):
            console.print(f"{name}: no longer counted as needing attention")
        else:
            console.print(f"{name}: was not marked as needing attention")

    guarded(body)
