"""`graylift init` and `graylift check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graylift.cli.common import ConfigOpt, Output, OutputOpt, guarded, local_service
from graylift.cli.output import console, emit_json, line
from graylift.errors import ConfigError, UsageError


def init(path: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write it.")] = Path("graylift.yaml"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write an annotated example config."""

    def body() -> None:
        from graylift.service import example_config

        if path.is_dir():
            raise UsageError(f"{path} is a directory; name the file to write, e.g. {path / 'graylift.yaml'}")
        if path.exists() and not force:
            raise UsageError(f"{path} exists; use --force to overwrite it")
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: the directory {path.parent} does not exist")
        try:
            path.write_text(example_config())
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        console.print(f"wrote {path}; edit it, then `graylift check -c {path}`")

    guarded(body)


def check(output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Validate the config: every app in every env, the files and variables it names, the state database, and
    that each app/env's hosts can be released under its strategy (the < 50% rule)."""

    def body() -> None:
        from graylift.service.checks import check_config

        report = check_config(local_service(config, "`graylift check` reads a config file"))
        if output is Output.json:
            emit_json({"config": report.config, "state_db": report.state_db, "ok": report.ok,
                       "apps": [vars(a) for a in report.apps], "problems": report.problems})
        else:
            for a in report.apps:
                envs = ", ".join(a.envs) or "(any)"
                hosts = "".join(f"; {n} host(s) in {e}" for e, n in sorted(a.hosts.items()))
                console.print(line(("ok", "green"), f" {a.name}: envs {envs}, {a.traffic} traffic switch(es), "
                                   f"{a.silencers} silencer(s){hosts}"))
        if report.problems:
            raise ConfigError("\n".join([f"{report.config}: {len(report.problems)} problem(s):",
                                         *(f"  {p}" for p in report.problems)]))
        if output is Output.text:
            console.print(f"{report.config}: {len(report.apps)} app(s) valid; state {report.state_db}")

    guarded(body)
