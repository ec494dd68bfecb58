"""`graylift lab ...`: a local fleet to try graylift on (root: network namespaces)."""

from __future__ import annotations

from typing import Annotated

import typer

from graylift.cli.common import guarded
from graylift.cli.output import console

lab_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                     help="A local fleet of sshd hosts in network namespaces (root).")


@lab_app.command("up")
def lab_up_cmd(hosts: Annotated[int, typer.Option(help="Number of hosts.")] = 10,
               apps: Annotated[str, typer.Option(help="Comma-separated: pyapp, shop.")] = "pyapp",
               name: Annotated[str, typer.Option(help="Lab name.")] = "lab",
               lbs: Annotated[str, typer.Option(help="Load balancers in the written config: haproxy, nginx.")]
               = "haproxy",
               nginx_layout: Annotated[str, typer.Option(help="block-in-include or include-inside-upstream.")]
               = "block-in-include") -> None:
    """Start a local fleet: sshd hosts in network namespaces, HAProxy, nginx, ZooKeeper, Alertmanager, artifacts."""
    from graylift.lab import lab_up

    info = guarded(lambda: lab_up(name=name, hosts=hosts, apps=tuple(a for a in apps.split(",") if a),
                                  lbs=tuple(b for b in lbs.split(",") if b), nginx_layout=nginx_layout))
    console.print(f"lab {name!r} up: {len(info.hosts)} host(s); config {info.config_path}")
    console.print(f"next: graylift -c {info.config_path} hosts import pyapp {info.hosts_file} --env prod")


@lab_app.command("down")
def lab_down_cmd(name: Annotated[str, typer.Option(help="Lab name.")] = "lab") -> None:
    """Stop the local fleet and remove everything it made."""
    from graylift.lab import lab_down

    guarded(lambda: lab_down(name=name))
    console.print(f"lab {name!r} down")


@lab_app.command("demo")
def lab_demo_cmd(hosts: Annotated[int, typer.Option()] = 10,
                 keep: Annotated[bool, typer.Option(help="Leave the lab up afterwards.")] = False) -> None:
    """The README demo: a lab, release v1 -> v2 under load, rollback, with failed-request counts."""
    from graylift.demo import run_demo

    code = guarded(lambda: run_demo(hosts=hosts, keep=keep, console=console))
    raise typer.Exit(code)
