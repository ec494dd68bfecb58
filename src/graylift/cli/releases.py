"""Releases: plan, release, rollback, status, the requests (promote, pause, abort, resume, retry), history.

A release is named by its id or by ``APP --env ENV`` (its active release, else its last one). status, pause,
abort, promote, resume and the rollback of an active release need only the state database: the release keeps
its own config snapshot, so a broken config file is worked around (and said).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from graylift.cli.common import (
    AppArg,
    ConfigOpt,
    EnvOpt,
    MaybeEnvOpt,
    Output,
    OutputOpt,
    RefArg,
    VersionArg,
    WaitOpt,
    emergency,
    find_release,
    guarded,
    local_service,
    run_async,
    service,
    who,
)
from graylift.cli.output import console, emit_json, line, show_table, styled, table
from graylift.core.state import Direction, ReleaseKind, ReleaseState
from graylift.errors import EXIT_FAILED, EXIT_OK, PreflightFailed

if TYPE_CHECKING:
    from graylift.cli.common import Service
    from graylift.service import ReleaseRecord

GOOD = (ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK)


def _release_json(gl: Service, rec: ReleaseRecord) -> dict[str, Any]:
    from graylift.api.answers import release_out

    return release_out(rec, gone=gl.controller_gone(rec)).model_dump(mode="json")


def plan(app_name: AppArg, env: EnvOpt, version: Annotated[str | None, typer.Argument(metavar="VERSION")] = None,
         output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Batches, skipped hosts, an estimate and the preflight of every host and backend; touches no host."""

    def body() -> None:
        view = run_async(service(config).plan(app_name, env, version))
        if output is Output.json:
            from graylift.api.answers import plan_out

            emit_json(plan_out(view).model_dump(mode="json"))
            if view.report.problems:
                raise PreflightFailed(view.report.problems)
            return
        batches = table("batch", "hosts")
        for b in view.plan.batches:
            batches.add_row(b.label, " ".join(b.hosts))
        show_table(batches)
        if view.plan.blue_green is not None:
            from graylift.core.bluegreen import describe

            for step in describe(view.plan):
                console.print(f"blue-green {step}")
        for s in view.plan.skipped:
            console.print(line(("skipped", "yellow"), f" {s.host}: {s.reason}"))
        for name, health in view.attention.items():
            console.print(line(("counted as out", "yellow"), f" {name}: needs attention since release "
                               f"#{health.release_id} ({health.reason})"))
        console.print(f"{len(view.plan.hosts)} host(s) in {len(view.plan.batches)} batch(es) of a cluster of "
                      f"{view.plan.cluster_size}; estimated {view.plan.estimate_seconds:.0f}s; "
                      f"{view.previous_version or '(none)'} -> {version or 'VERSION'}")
        for note in view.report.notes:
            console.print(f"preflight: {note}")
        if view.report.problems:
            raise PreflightFailed(view.report.problems)
        console.print(f"preflight: {len(view.report.hosts)} host(s) and every backend checked, no problem")

    guarded(body)


def run_release(gl: Service, rec: ReleaseRecord, wait: bool) -> None:
    """Drive a new release here (``--wait``) or hand it off: exit 0 only if it succeeded."""
    _run(gl, rec, wait, (ReleaseState.SUCCEEDED,))


def _run(gl: Service, rec: ReleaseRecord, wait: bool, good: tuple[ReleaseState, ...] = GOOD) -> None:
    """Drive here with live progress (``--wait``: exit 0 only if it ends in ``good``), or hand it off."""
    from graylift.cli.render import PROGRESS, printer

    if wait:
        _finish(gl, gl.drive(rec.id, printer(console), shown=PROGRESS), good)
    gl.hand_off(rec.id)
    console.print(f"release #{rec.id} goes on in the background; `graylift status {rec.id} --watch` follows it")


def _finish(gl: Service, final: ReleaseRecord, good: tuple[ReleaseState, ...]) -> NoReturn:
    from graylift.cli.render import render_release

    render_release(console, gl, final)
    raise typer.Exit(EXIT_OK if final.state in good else EXIT_FAILED)


def _start_and_drive(gl: Service, start: Callable[[], Awaitable[ReleaseRecord]],
                     good: tuple[ReleaseState, ...] = GOOD) -> NoReturn:
    """``--wait``: start and drive in one event loop, so the preflight's SSH connections serve the drive."""
    from graylift.cli.render import PROGRESS, printer

    async def both() -> ReleaseRecord:
        async with gl.sharing_connections():
            rec = await start()
            return await gl.drive_here(rec.id, printer(console), shown=PROGRESS)

    _finish(gl, run_async(both()), good)


def release(app_name: AppArg, version: VersionArg, env: EnvOpt, wait: WaitOpt = False,
            outside_window: Annotated[str | None, typer.Option(
                "--outside-window", metavar="REASON", help="Release outside the app's release windows; the "
                "reason is journaled.")] = None,
            migration: Annotated[str | None, typer.Option(
                "--migration", metavar="KIND", help="expand (backward compatible) or contract: what this "
                "release's schema migration is (default: the config's migration.default).")] = None,
            config: ConfigOpt = None) -> None:
    """Release VERSION of APP to an environment: gates, preflight, migration, canary, then rolling batches."""

    def body() -> None:
        gl = service(config)
        extra = {k: v for k, v in (("outside_window", outside_window), ("migration", migration)) if v is not None}

        async def start() -> ReleaseRecord:
            rec = await gl.start_release(app_name, env, version, started_by=who(), **extra)
            console.print(f"release #{rec.id}: {app_name} {rec.previous_version or '(none)'} -> {version} ({env}), "
                          f"{len(rec.plan['batches'])} batch(es); preflight passed")
            return rec

        if wait:
            _start_and_drive(gl, start, (ReleaseState.SUCCEEDED,))
        _run(gl, run_async(start()), wait=False)

    guarded(body)


def rollback(app_name: AppArg, env: EnvOpt,
             to: Annotated[str | None, typer.Option("--to", metavar="VERSION", help="Version to go back to.")] = None,
             wait: WaitOpt = False,
             override_migration: Annotated[str | None, typer.Option(
                 "--override-migration", metavar="REASON", help="Roll back across a contract migration anyway; "
                 "the reason is journaled.")] = None,
             config: ConfigOpt = None) -> None:
    """Put the previous good version back (or --to VERSION), as gracefully as a release; mid-release or after
    it, and from the state database alone when the config does not load."""

    def body() -> None:
        gl = service(config)
        gl.check_app(app_name, env)
        extra = {"override_migration": override_migration} if override_migration else {}

        async def start() -> ReleaseRecord:
            rec = await gl.start_rollback(app_name, env, to_version=to, started_by=who(), **extra)
            emergency(gl)
            target = rec.previous_version if rec.kind is ReleaseKind.RELEASE else rec.version
            console.print(f"rollback of {app_name} ({env}) to {target}: release #{rec.id} ({rec.state.value})")
            return rec

        if wait:
            _start_and_drive(gl, start)
        rec = run_async(start())
        if rec.kind is ReleaseKind.ROLLBACK or gl.needs_hand_off(rec):
            _run(gl, rec, wait=False)

    guarded(body)


def status(ref: Annotated[str | None, typer.Argument(metavar="RELEASE", help="Release id, or app name with "
                                                     "--env; none: every active release.")] = None,
           env: MaybeEnvOpt = None,
           watch: Annotated[bool, typer.Option("--watch", help="Follow until it finishes.")] = False,
           output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Show a release: state, batches, hosts, waits; or every active release. Never takes one over."""
    from graylift.cli.render import PROGRESS, printer, render_release

    def body() -> None:
        gl = service(config)
        if ref is None:
            active = gl.active_releases()
            emergency(gl)
            if output is Output.json:
                emit_json({"state_db": gl.state_location, "active": [_release_json(gl, r) for r in active]})
                return
            if not active:
                console.print("no active release")
            for r in active:
                gone = ("  (controller gone: `graylift resume`)", "red") if gl.controller_gone(r) else ""
                console.print(line(f"#{r.id} {r.app} {r.version} ({r.env}) ", styled(r.state.value),
                                   f" {r.message}", gone))
            console.print(line(("state: ", "dim"), (gl.state_location, "dim")))
            return
        rec = find_release(gl, ref, env)
        emergency(gl)
        if watch and output is Output.text:
            rec = gl.follow(rec.id, printer(console), shown=PROGRESS)
        if output is Output.json:
            from graylift.api.answers import host_run_out

            emit_json({"state_db": gl.state_location, "release": _release_json(gl, rec),
                       "hosts": [host_run_out(r).model_dump(mode="json") for r in gl.host_runs(rec.id)]})
            return
        render_release(console, gl, rec)
        if gl.controller_gone(rec):
            since = rec.heartbeat_at or rec.updated_at
            console.print(line(("controller gone", "red"), f" since {since:%Y-%m-%d %H:%M:%S} UTC "
                               f"({rec.owner or 'never claimed'}); run `graylift resume {rec.id}`"))
        console.print(line(("state: ", "dim"), (gl.state_location, "dim")))

    guarded(body)


def _control(ref: str, env: str | None, action: str, config: ConfigOpt) -> None:
    def body() -> None:
        gl = service(config)
        rec = gl.request(find_release(gl, ref, env).id, action)
        emergency(gl)
        console.print(f"release #{rec.id}: {action} requested (state {rec.state.value})")
        if gl.needs_hand_off(rec):
            gl.hand_off(rec.id)  # nobody drives it: a worker acts on the request

    guarded(body)


def promote(ref: RefArg, env: MaybeEnvOpt = None, config: ConfigOpt = None) -> None:
    """Promote a baking or baked canary: go on to the rolling batches."""
    _control(ref, env, "promote", config)


def pause(ref: RefArg, env: MaybeEnvOpt = None, config: ConfigOpt = None) -> None:
    """Stop at the next safe point (hosts in flight finish first)."""
    _control(ref, env, "pause", config)


def abort(ref: RefArg, env: MaybeEnvOpt = None, config: ConfigOpt = None) -> None:
    """Stop at the next safe point and end the release; hosts already done keep the new version."""
    _control(ref, env, "abort", config)


def resume(ref: Annotated[str | None, typer.Argument(metavar="RELEASE", help="A release id, or an app name "
                                                     "with --env; none: every orphaned release.")] = None,
           env: MaybeEnvOpt = None, wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Go on with a paused release in its own direction; without one, take over every orphaned release."""
    from graylift.cli.render import PROGRESS, printer

    def body() -> None:
        gl = service(config)
        recs = [gl.resume(find_release(gl, ref, env).id)] if ref is not None else gl.orphaned_releases()
        emergency(gl)
        if not recs:
            console.print("nothing to resume: every active release has a live controller")
            return
        for rec in recs:
            way = "rolling back" if rec.direction is Direction.BACK else "forward"
            console.print(f"resuming release #{rec.id}: {rec.app} {rec.version} ({rec.env}), {rec.state.value}; "
                          f"it goes on {way}")
        if wait:
            finals = [gl.drive(r.id, printer(console), shown=PROGRESS) for r in recs]
            raise typer.Exit(EXIT_OK if all(f.state in GOOD for f in finals) else EXIT_FAILED)
        for rec in recs:
            gl.hand_off(rec.id)

    guarded(body)


def retry(ref: RefArg, env: MaybeEnvOpt = None, wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Queue the failed hosts of a paused release again, in its direction, and go on."""

    def body() -> None:
        gl = service(config)
        rec = gl.retry(find_release(gl, ref, env).id)
        way = "rolling back" if rec.direction is Direction.BACK else f"forward to {rec.version}"
        console.print(f"release #{rec.id}: {rec.message}; it goes on {way}")
        _run(gl, rec, wait)

    guarded(body)


def history(app_name: AppArg, env: EnvOpt, output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Releases and deployed versions of an app in an environment, newest first."""

    def body() -> None:
        gl = service(config)
        gl.check_app(app_name, env)
        releases, current = gl.list_releases(app_name, env), gl.current_version(app_name, env)
        emergency(gl)
        if output is Output.json:
            emit_json({"app": app_name, "env": env, "current_version": current,
                       "releases": [_release_json(gl, r) for r in releases]})
            return
        rows = table("#", "kind", "version", "from", "state", "by", "started", "finished", "message")
        for r in releases:
            rows.add_row(str(r.id), r.kind.value, r.version, r.previous_version or "", styled(r.state.value),
                         r.started_by, f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                         f"{r.finished_at:%H:%M:%S}" if r.finished_at else "", r.message[:60])
        show_table(rows)
        console.print(f"current version: {current or '(none)'}")

    guarded(body)


def worker(release: int, config: ConfigOpt = None) -> None:
    """Drive one release to a safe stop (spawned by release/resume/retry/rollback and the requests)."""

    def body() -> None:
        rec = local_service(config).drive(release)  # spawned here to drive it here
        print(f"release #{rec.id} {rec.state}: {rec.message}", flush=True)

    guarded(body)
