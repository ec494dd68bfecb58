"""`graylift schedule`, `schedules`, `unschedule` and `promote-env`: a release at a time, and a version from one
environment to the next through its gate (docs/config.md: `strategy.windows`, `promotion`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from graylift.cli.common import (
    AppArg,
    ConfigOpt,
    EnvOpt,
    MaybeEnvOpt,
    Output,
    OutputOpt,
    VersionArg,
    WaitOpt,
    guarded,
    local_service,
    run_async,
    who,
)
from graylift.cli.output import console, emit_json, show_table, table
from graylift.errors import UsageError

if TYPE_CHECKING:
    from graylift.service import Graylift



def _local(config: Path | None) -> Graylift:
    return local_service(config, "schedules live in the state database")


def parse_time(text: str) -> datetime:
    """ISO 8601; without a zone it is this machine's local time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--at {text!r} is not a time like 2026-12-03T02:00+08:00 (ISO 8601)") from None
    return when if when.tzinfo is not None else when.astimezone()


def schedule(app_name: AppArg, version: VersionArg, env: EnvOpt,
             at: Annotated[str, typer.Option("--at", metavar="TIME", help="When: ISO 8601, e.g. "
                                             "2026-12-03T02:00+08:00 (no zone: this machine's).")],
             config: ConfigOpt = None) -> None:
    """Start a release of APP VERSION at a time (inside its release windows); `serve` or `worker` starts it."""

    def body() -> None:
        gl = _local(config)
        s = gl.schedule_release(app_name, env, version, parse_time(at), by=who())
        console.print(f"scheduled #{s.id}: {s.app} {s.version} ({s.env}) at {s.run_at.isoformat(timespec='minutes')};"
                      " `graylift serve` or `graylift worker` starts it then (`graylift schedules` shows it)")

    guarded(body)


def schedules(app_name: Annotated[str | None, typer.Argument(metavar="APP", help="Only this app.")] = None,
              env: MaybeEnvOpt = None, output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Scheduled releases, newest first: waiting, starting, started (with the release), failed (with why), cancelled."""

    def body() -> None:
        found = _local(config).schedule_store().schedules(app=app_name, env=env)
        if output is Output.json:
            emit_json([{"id": s.id, "app": s.app, "env": s.env, "version": s.version,
                        "run_at": s.run_at.isoformat(), "state": s.state, "message": s.message,
                        "release_id": s.release_id, "created_by": s.created_by} for s in found])
            return
        if not found:
            console.print("no scheduled release")
            return
        tbl = table("id", "app", "env", "version", "at", "state", "note")
        for s in found:
            tbl.add_row(str(s.id), s.app, s.env, s.version, s.run_at.isoformat(timespec="minutes"), s.state,
                        s.message)
        show_table(tbl)

    guarded(body)


def unschedule(schedule_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=2**62)],
               config: ConfigOpt = None) -> None:
    """Cancel a scheduled release that has not started."""

    def body() -> None:
        s = _local(config).cancel_schedule(schedule_id, by=who())
        console.print(f"scheduled #{s.id} ({s.app} {s.version}, {s.env}) cancelled")

    guarded(body)


def promote_env(app_name: AppArg, version: VersionArg,
                from_env: Annotated[str, typer.Option("--from", metavar="ENV", help="Where it succeeded.")],
                to_env: Annotated[str, typer.Option("--to", metavar="ENV", help="Where it goes now.")],
                wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Release a version that succeeded in --from to --to (and passes --to's own promotion gate)."""
    from graylift.cli.releases import run_release

    def body() -> None:
        gl = _local(config)
        rec = run_async(gl.promote_env(app_name, version, from_env=from_env, to_env=to_env, started_by=who()))
        console.print(f"release #{rec.id}: {app_name} {version} from {from_env} to {to_env}; preflight passed")
        run_release(gl, rec, wait)

    guarded(body)
