"""Releases: plan, release, rollback, status, the requests (promote, pause, abort, resume, retry), history."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from graylift.cli.common import ConfigOpt, EnvOpt, WaitOpt, console, guarded, release_id, service, who
from graylift.cli.render import printer, render_release, styled
from graylift.core.state import Direction, ReleaseKind, ReleaseState
from graylift.errors import PreflightFailed
from graylift.service import Graylift, ReleaseRecord

AppArg = Annotated[str, typer.Argument(metavar="APP")]
GOOD = (ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK)


def plan(app_name: AppArg, env: EnvOpt, version: Annotated[str | None, typer.Argument(metavar="[VERSION]")] = None,
         config: ConfigOpt = None) -> None:
    """Batches, skipped hosts, an estimate and the preflight of every host and backend; touches no host."""

    def body() -> None:
        view = asyncio.run(service(config).plan(app_name, env, version))
        table = Table("batch", "hosts")
        for b in view.plan.batches:
            table.add_row(b.label, " ".join(b.hosts))
        console.print(table)
        for s in view.plan.skipped:
            console.print(f"[yellow]skipped[/yellow] {s.host}: {s.reason}")
        for name, health in view.attention.items():
            console.print(f"[yellow]counted as out[/yellow] {name}: needs attention since release "
                          f"#{health.release_id} ({health.reason})")
        console.print(f"{len(view.plan.hosts)} host(s) in {len(view.plan.batches)} batch(es) of a cluster of "
                      f"{view.plan.cluster_size}; estimated {view.plan.estimate_seconds:.0f}s; "
                      f"{view.previous_version or '(none)'} -> {version or 'VERSION'}")
        for note in view.report.notes:
            console.print(f"preflight: {note}")
        if view.report.problems:
            raise PreflightFailed(view.report.problems)
        console.print(f"preflight: {len(view.report.hosts)} host(s) and every backend checked, no problem")

    guarded(body)


def _run(gl: Graylift, rec: ReleaseRecord, wait: bool, good: tuple[ReleaseState, ...] = GOOD) -> None:
    """Drive here with live progress (``--wait``: exit 0 only if it ends in ``good``), or hand it off."""
    if wait:
        final = gl.drive(rec.id, printer(console))
        render_release(console, gl, final)
        raise typer.Exit(0 if final.state in good else 1)
    gl.hand_off(rec.id)
    console.print(f"release #{rec.id} goes on in the background; `graylift status {rec.id} --watch` follows it")


def release(app_name: AppArg, version: str, env: EnvOpt, wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Release VERSION of APP to an environment: preflight, canary, then rolling batches."""

    def body() -> None:
        gl = service(config)
        rec = asyncio.run(gl.start_release(app_name, env, version, started_by=who()))
        console.print(f"release #{rec.id}: {app_name} {rec.previous_version or '(none)'} -> {version} ({env}), "
                      f"{len(rec.plan['batches'])} batch(es); preflight passed")
        _run(gl, rec, wait, (ReleaseState.SUCCEEDED,))

    guarded(body)


def rollback(app_name: AppArg, env: EnvOpt,
             to: Annotated[str | None, typer.Option("--to", help="Version to go back to.")] = None,
             wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Put the previous good version back (or --to VERSION), as gracefully as a release; works mid-release."""

    def body() -> None:
        gl = service(config)
        rec = asyncio.run(gl.start_rollback(app_name, env, to_version=to, started_by=who()))
        target = rec.previous_version if rec.kind is ReleaseKind.RELEASE else rec.version
        console.print(f"rollback of {app_name} ({env}) to {target}: release #{rec.id} ({rec.state.value})")
        if wait or rec.kind is ReleaseKind.ROLLBACK or gl.needs_hand_off(rec):
            _run(gl, rec, wait)

    guarded(body)


def status(ref: Annotated[str | None, typer.Argument(help="Release id, or app name with --env.")] = None,
           env: Annotated[str | None, typer.Option("--env", "-e")] = None,
           watch: Annotated[bool, typer.Option("--watch", help="Follow until it finishes.")] = False,
           config: ConfigOpt = None) -> None:
    """Show a release: state, batches, hosts, waits; or every active release. Never takes one over."""

    def body() -> None:
        gl = service(config)
        if ref is None:
            active = gl.active_releases()
            if not active:
                console.print("no active release")
            for r in active:
                gone = " [red](controller gone: `graylift resume`)[/red]" if gl.controller_gone(r) else ""
                console.print(f"#{r.id} {r.app} {r.version} ({r.env}) {styled(r.state)} {r.message}{gone}")
            return
        rec = gl.find(ref, env)
        if watch:
            rec = gl.follow(rec.id, printer(console))
        render_release(console, gl, rec)
        if gl.controller_gone(rec):
            since = rec.heartbeat_at or rec.updated_at
            console.print(f"[red]controller gone[/red] since {since:%Y-%m-%d %H:%M:%S} UTC "
                          f"({rec.owner or 'never claimed'}); run `graylift resume {rec.id}`")

    guarded(body)


def _control(ref: str, action: str, config: ConfigOpt) -> None:
    def body() -> None:
        gl = service(config)
        rec = gl.request(release_id(ref), action)
        console.print(f"release #{rec.id}: {action} requested (state {rec.state.value})")
        if gl.needs_hand_off(rec):
            gl.hand_off(rec.id)  # nobody drives it: a worker acts on the request

    guarded(body)


def promote(ref: Annotated[str, typer.Argument(metavar="RELEASE_ID")], config: ConfigOpt = None) -> None:
    """Promote a baking or baked canary: go on to the rolling batches."""
    _control(ref, "promote", config)


def pause(ref: Annotated[str, typer.Argument(metavar="RELEASE_ID")], config: ConfigOpt = None) -> None:
    """Stop at the next safe point (hosts in flight finish first)."""
    _control(ref, "pause", config)


def abort(ref: Annotated[str, typer.Argument(metavar="RELEASE_ID")], config: ConfigOpt = None) -> None:
    """Stop at the next safe point and end the release; hosts already done keep the new version."""
    _control(ref, "abort", config)


def resume(ref: Annotated[str | None, typer.Argument(metavar="[RELEASE_ID]")] = None, wait: WaitOpt = False,
           config: ConfigOpt = None) -> None:
    """Go on with a paused release in its own direction; without an id, take over every orphaned release."""

    def body() -> None:
        gl = service(config)
        recs = [gl.resume(release_id(ref))] if ref is not None else gl.orphaned_releases()
        if not recs:
            console.print("nothing to resume: every active release has a live controller")
            return
        for rec in recs:
            way = "rolling back" if rec.direction is Direction.BACK else "forward"
            console.print(f"resuming release #{rec.id}: {rec.app} {rec.version} ({rec.env}), {rec.state.value}; "
                          f"it goes on {way}")
        if wait:
            finals = [gl.drive(r.id, printer(console)) for r in recs]
            raise typer.Exit(0 if all(f.state in GOOD for f in finals) else 1)
        for rec in recs:
            gl.hand_off(rec.id)

    guarded(body)


def retry(ref: Annotated[str, typer.Argument(metavar="RELEASE_ID")], wait: WaitOpt = False,
          config: ConfigOpt = None) -> None:
    """Queue the failed hosts of a paused release again, in its direction, and go on."""

    def body() -> None:
        gl = service(config)
        rec = gl.retry(release_id(ref))
        way = "rolling back" if rec.direction is Direction.BACK else f"forward to {rec.version}"
        console.print(f"release #{rec.id}: {rec.message}; it goes on {way}")
        _run(gl, rec, wait)

    guarded(body)


def history(app_name: AppArg, env: EnvOpt, config: ConfigOpt = None) -> None:
    """Releases and deployed versions of an app in an environment, newest first."""

    def body() -> None:
        gl = service(config)
        table = Table("#", "kind", "version", "from", "state", "by", "started", "finished", "message")
        for r in gl.list_releases(app_name, env):
            table.add_row(str(r.id), r.kind, r.version, r.previous_version or "", styled(r.state), r.started_by,
                          f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                          f"{r.finished_at:%H:%M:%S}" if r.finished_at else "", r.message[:60])
        console.print(table)
        console.print(f"current version: {gl.current_version(app_name, env) or '(none)'}")

    guarded(body)


def worker(release: int, config: ConfigOpt = None) -> None:
    """Drive one release to a safe stop (spawned by release/resume/retry/rollback and the requests)."""

    def body() -> None:
        rec = service(config).drive(release)
        print(f"release #{rec.id} {rec.state}: {rec.message}", flush=True)

    guarded(body)
