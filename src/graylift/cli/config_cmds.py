"""`graylift init` and `graylift check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graylift.cli.common import ConfigOpt, console, err, guarded, service
from graylift.service import example_config


def init(path: Annotated[Path, typer.Argument()] = Path("graylift.yaml"),
         force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False) -> None:
    """Write an annotated example config."""
    if path.exists() and not force:
        err.print(f"[red]error:[/red] {path} exists; use --force to overwrite it")
        raise typer.Exit(2)
    path.write_text(example_config())
    console.print(f"wrote {path}; edit it, then `graylift check -c {path}`")


def check(config: ConfigOpt = None) -> None:
    """Validate the config file (every app in every environment)."""

    def body() -> None:
        gl = service(config)
        cfg = gl.config
        for name, app_cfg in cfg.apps.items():
            envs = sorted(app_cfg.envs) or ["(default)"]
            for env in envs:
                if env != "(default)":
                    cfg.app_for_env(name, env)
            console.print(f"[green]ok[/green] {name}: envs {', '.join(envs)}, "
                          f"{len(app_cfg.traffic)} traffic switch(es), {len(app_cfg.monitoring)} silencer(s)")
        console.print(f"{gl.config_path}: {len(cfg.apps)} app(s) valid")

    guarded(body)
