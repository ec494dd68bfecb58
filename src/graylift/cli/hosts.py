"""`graylift hosts ...`: the built-in CMDB, the read-only survey, host health."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graylift.cli.common import ConfigOpt, EnvOpt, console, guarded, service

hosts_app = typer.Typer(no_args_is_help=True, help="The built-in CMDB: which hosts run which app.")
AppOpt = Annotated[str, typer.Option("--app")]


@hosts_app.command("import")
def hosts_import(file: Path, app_name: AppOpt, env: EnvOpt, config: ConfigOpt = None,
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; store nothing.")]
                 = False) -> None:
    """Replace the app/env host list with a YAML or Ansible (INI/YAML) inventory; show what is added, removed
    and changed. Hosts in maintenance stay in maintenance; hosts a running release uses cannot be removed."""

    def body() -> None:
        diff = service(config).import_hosts_file(file, app_name, env, dry_run=dry_run)
        for line in diff.lines():
            console.print(line, markup=False)
        done = "would import" if dry_run else "imported"
        console.print(f"{done} {diff.count} host(s) for {app_name} ({env}) from {file}: {diff.summary()}"
                      + (" (dry run: nothing stored)" if dry_run else ""), markup=False)

    guarded(body)


@hosts_app.command("list")
def hosts_list(app_name: AppOpt, env: EnvOpt, config: ConfigOpt = None) -> None:
    """List an app's hosts in an environment."""

    def body() -> None:
        table = Table("name", "address", "group", "tags", "in service")
        for h in service(config).list_hosts(app_name, env):
            tags = ",".join(f"{k}={v}" for k, v in sorted(h.tags.items()))
            table.add_row(h.name, f"{h.address}:{h.port}", h.group, tags, "yes" if h.in_service else "[yellow]no")
        console.print(table)

    guarded(body)


@hosts_app.command("maintenance")
def hosts_maintenance(name: str, app_name: AppOpt, env: EnvOpt,
                      off: Annotated[bool, typer.Option("--off", help="Put the host back in service.")] = False,
                      config: ConfigOpt = None) -> None:
    """Mark a host in maintenance (skipped by releases, counted against the 50% cap) or back in service."""
    guarded(lambda: service(config).set_maintenance(app_name, env, name, in_service=off))
    console.print(f"{name}: {'in service' if off else 'in maintenance'}")


@hosts_app.command("survey")
def hosts_survey(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt,
                 version: Annotated[str | None, typer.Option("--version", help="The version a release would bring.")]
                 = None, config: ConfigOpt = None) -> None:
    """Read-only: what each host runs and serves, the layout found, what a release would do."""

    def body() -> None:
        rows = asyncio.run(service(config).survey(app_name, env, version))
        table = Table("host", "layout", "version", "sha256", "serving", "a release would")
        for r in rows:
            table.add_row(r.host.name, r.layout, r.version or "", (r.sha256 or "")[:12], r.serving, r.would)
        console.print(table)

    guarded(body)


@hosts_app.command("clear")
def hosts_clear(name: str, app_name: AppOpt, env: EnvOpt, config: ConfigOpt = None) -> None:
    """Forget that an earlier release left a host needing attention (after you fixed it by hand)."""

    def body() -> None:
        if service(config).clear_host(app_name, env, name):
            console.print(f"{name}: no longer counted as needing attention")
        else:
            console.print(f"{name}: was not marked as needing attention")

    guarded(body)
