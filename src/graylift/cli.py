"""The `graylift` command: a thin layer over graylift.service. Errors become messages and exit codes here."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from graylift.core.state import Direction, ReleaseKind, ReleaseState
from graylift.errors import ConfigError, GrayliftError, PlanError, PreflightFailed, StateError
from graylift.service import Graylift
from graylift.store import ReleaseRecord

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="graylift: graceful, durable releases for fleets of VMs and bare-metal hosts.")
hosts_app = typer.Typer(no_args_is_help=True, help="The built-in CMDB: which hosts run which app.")
lab_app = typer.Typer(no_args_is_help=True, help="A local fleet of sshd hosts in network namespaces (root).")
app.add_typer(hosts_app, name="hosts")
app.add_typer(lab_app, name="lab")

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file (env GRAYLIFT_CONFIG; "
                                                "default ./graylift.yaml).")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: dev, test, staging, beta, prod, ...")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Block with live progress; exit 0 only on success.")]

STATE_STYLE = {"succeeded": "green", "rolled_back": "yellow", "paused": "yellow", "failed": "red",
               "aborted": "red", "running": "cyan", "baking": "cyan", "awaiting_promotion": "magenta",
               "rolling_back": "yellow", "done": "green", "needs_attention": "red", "skipped": "yellow"}


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; a GrayliftError becomes a one-line message and exit code 2 (input) or 1."""
    try:
        return fn()
    except (ConfigError, PlanError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except GrayliftError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: the release stays where it is; `graylift resume` goes on")
        raise typer.Exit(130) from None


def _gl(config: Path | None) -> Graylift:
    """The service. No command but `resume` (and a worker) ever takes a release over."""
    return Graylift(config)


def _who() -> str:
    return os.environ.get("GRAYLIFT_USER") or getpass.getuser()


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


# --- config ------------------------------------------------------------------------------------


@app.command()
def init(path: Annotated[Path, typer.Argument()] = Path("graylift.yaml"),
         force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False) -> None:
    """Write an annotated example config."""
    from graylift.config import example_config_text

    if path.exists() and not force:
        err.print(f"[red]error:[/red] {path} exists; use --force to overwrite it")
        raise typer.Exit(2)
    path.write_text(example_config_text())
    console.print(f"wrote {path}; edit it, then `graylift check -c {path}`")


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate the config file (every app in every environment)."""

    def body() -> None:
        gl = _gl(config)
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


# --- hosts -------------------------------------------------------------------------------------


@hosts_app.command("import")
def hosts_import(file: Path, app_name: Annotated[str, typer.Option("--app")], env: EnvOpt,
                 config: ConfigOpt = None) -> None:
    """Replace the app/env host list with a YAML or Ansible (INI/YAML) inventory."""
    from graylift.adapters.inventory.hostfile import load_hosts_file

    def body() -> None:
        hosts = load_hosts_file(file)
        gl = _gl(config)
        gl.store.replace_hosts(app_name, env, hosts)
        console.print(f"imported {len(hosts)} host(s) for {app_name} ({env}) from {file}")

    guarded(body)


@hosts_app.command("list")
def hosts_list(app_name: Annotated[str, typer.Option("--app")], env: EnvOpt, config: ConfigOpt = None) -> None:
    """List an app's hosts in an environment."""

    def body() -> None:
        table = Table("name", "address", "group", "tags", "in service")
        for h in _gl(config).store.list_hosts(app_name, env):
            tags = ",".join(f"{k}={v}" for k, v in sorted(h.tags.items()))
            table.add_row(h.name, f"{h.address}:{h.port}", h.group, tags, "yes" if h.in_service else "[yellow]no")
        console.print(table)

    guarded(body)


@hosts_app.command("maintenance")
def hosts_maintenance(name: str, app_name: Annotated[str, typer.Option("--app")], env: EnvOpt,
                      off: Annotated[bool, typer.Option("--off", help="Put the host back in service.")] = False,
                      config: ConfigOpt = None) -> None:
    """Mark a host in maintenance (skipped by releases, counted against the 50% cap) or back in service."""
    guarded(lambda: _gl(config).store.set_in_service(app_name, env, name, off))
    console.print(f"{name}: {'in service' if off else 'in maintenance'}")


@hosts_app.command("survey")
def hosts_survey(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt,
                 version: Annotated[str | None, typer.Option("--version", help="The version a release would bring.")]
                 = None, config: ConfigOpt = None) -> None:
    """Read-only: what each host runs and serves, the layout found, what a release would do."""

    def body() -> None:
        rows = asyncio.run(_gl(config).survey(app_name, env, version))
        table = Table("host", "layout", "version", "sha256", "serving", "a release would")
        for r in rows:
            table.add_row(r.host.name, r.layout, r.version or "", (r.sha256 or "")[:12], r.serving, r.would)
        console.print(table)

    guarded(body)


@hosts_app.command("clear")
def hosts_clear(name: str, app_name: Annotated[str, typer.Option("--app")], env: EnvOpt,
                config: ConfigOpt = None) -> None:
    """Forget that an earlier release left a host needing attention (after you fixed it by hand)."""

    def body() -> None:
        if _gl(config).clear_host(app_name, env, name):
            console.print(f"{name}: no longer counted as needing attention")
        else:
            console.print(f"{name}: was not marked as needing attention")

    guarded(body)


# --- releases ----------------------------------------------------------------------------------


@app.command()
def plan(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt,
         version: Annotated[str | None, typer.Argument(metavar="[VERSION]")] = None,
         config: ConfigOpt = None) -> None:
    """Print the batches, skipped hosts, an estimate and the preflight of every host and backend;
    touches no host."""

    def body() -> None:
        view = asyncio.run(_gl(config).plan(app_name, env, version))
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


def _spawn_worker(gl: Graylift, release_id: int) -> None:
    """Drive the release in a detached process so this command can return. Its log is private (0600)."""
    log_dir = Path(os.environ.get("GRAYLIFT_LOG_DIR", Path.home() / ".graylift" / "logs"))
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = log_dir / f"release-{release_id}.log"
    log = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    os.chmod(path, 0o600)
    argv = [sys.executable, "-m", "graylift", "-c", str(gl.config_path.absolute()), "worker", str(release_id)]
    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _drive_and_watch(gl: Graylift, release_id: int) -> ReleaseRecord:
    from graylift.progress import drive_and_watch

    return drive_and_watch(gl, release_id, console)


def _finish(gl: Graylift, rec: ReleaseRecord, wait: bool) -> None:
    if wait:
        rec = _drive_and_watch(gl, rec.id)
        raise typer.Exit(0 if rec.state == ReleaseState.SUCCEEDED else 1)
    _spawn_worker(gl, rec.id)
    console.print(f"release #{rec.id} started in the background; `graylift status {rec.id}` to watch")


@app.command()
def release(app_name: Annotated[str, typer.Argument(metavar="APP")], version: str, env: EnvOpt,
            wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Release VERSION of APP to an environment: canary, then rolling batches."""

    def body() -> None:
        gl = _gl(config)
        rec = asyncio.run(gl.start_release(app_name, env, version, started_by=_who()))
        console.print(f"release #{rec.id}: {app_name} {rec.previous_version or '(none)'} -> {version} ({env}), "
                      f"{len(rec.plan['batches'])} batch(es); preflight passed")
        _finish(gl, rec, wait)

    guarded(body)


@app.command()
def rollback(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt,
             to: Annotated[str | None, typer.Option("--to", help="Version to go back to.")] = None,
             wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Put the previous version back (or --to VERSION), as gracefully as a release; works mid-release."""

    def body() -> None:
        gl = _gl(config)  # it drives or hands off the release itself
        rec = asyncio.run(gl.start_rollback(app_name, env, to_version=to, started_by=_who()))
        target = rec.previous_version if rec.kind is ReleaseKind.RELEASE else rec.version
        console.print(f"rollback of {app_name} ({env}) to {target}: release #{rec.id} ({rec.state.value})")
        if wait:
            final = _drive_and_watch(gl, rec.id)
            ok = final.state in (ReleaseState.ROLLED_BACK, ReleaseState.SUCCEEDED)
            raise typer.Exit(0 if ok else 1)
        if rec.kind is ReleaseKind.ROLLBACK or gl.controller_gone(rec):
            _spawn_worker(gl, rec.id)

    guarded(body)


@app.command()
def status(ref: Annotated[str | None, typer.Argument(help="Release id, or app name with --env.")] = None,
           env: Annotated[str | None, typer.Option("--env", "-e")] = None,
           watch: Annotated[bool, typer.Option("--watch", help="Follow until it finishes.")] = False,
           config: ConfigOpt = None) -> None:
    """Show a release: state, batches, hosts, waits; or every active release."""
    from graylift.progress import render_release

    def body() -> None:
        gl = _gl(config)
        if ref is None:
            active = gl.store.active_releases()
            if not active:
                console.print("no active release")
            for r in active:
                gone = " [red](controller gone: `graylift resume`)[/red]" if gl.controller_gone(r) else ""
                console.print(f"#{r.id} {r.app} {r.version} ({r.env}) {_styled(r.state)} {r.message}{gone}")
            return
        rec = gl.find(ref, env)
        if watch:
            from graylift.progress import Watcher

            w = Watcher(gl.store, rec.id, console)
            while not gl.store.get_release(rec.id).finished:
                w.poll()
                time.sleep(0.5)
            w.poll()
            rec = gl.store.get_release(rec.id)
        render_release(console, gl.store, rec)
        if gl.controller_gone(rec):
            since = rec.heartbeat_at or rec.updated_at
            console.print(f"[red]controller gone[/red] since {since:%Y-%m-%d %H:%M:%S} UTC "
                          f"({rec.owner or 'never claimed'}); run `graylift resume {rec.id}`")

    guarded(body)


def _control(ref: str, action: str, config: Path | None) -> None:
    def body() -> None:
        gl = _gl(config)
        rec = gl.request(_release_id(ref), action)
        console.print(f"release #{rec.id}: {action} requested (state {rec.state.value})")
        if gl.controller_gone(rec) or (rec.state is ReleaseState.PAUSED and rec.requested is not None):
            _spawn_worker(gl, rec.id)  # nobody drives it: a worker acts on the request

    guarded(body)


def _release_id(ref: str) -> int:
    if not ref.isdigit() or len(ref) > 18:
        raise StateError(f"{ref!r} is not a release id (a number from `graylift history APP --env ENV`)")
    return int(ref)


@app.command()
def promote(release_id: str, config: ConfigOpt = None) -> None:
    """Promote a baking or baked canary: go on to the rolling batches."""
    _control(release_id, "promote", config)


@app.command()
def pause(release_id: str, config: ConfigOpt = None) -> None:
    """Stop at the next safe point (hosts in flight finish first)."""
    _control(release_id, "pause", config)


@app.command()
def abort(release_id: str, config: ConfigOpt = None) -> None:
    """Stop at the next safe point and end the release; hosts already done keep the new version."""
    _control(release_id, "abort", config)


@app.command()
def resume(release_id: Annotated[str | None, typer.Argument()] = None, wait: WaitOpt = False,
           config: ConfigOpt = None) -> None:
    """Go on with a paused release, or take over releases whose controller died (all, without an id)."""

    def body() -> None:
        gl = _gl(config)
        if release_id is not None:
            recs = [gl.resume(_release_id(release_id))]
        else:
            recs = gl.orphaned_releases()
            if not recs:
                console.print("nothing to resume: every active release has a live controller")
                return
        for rec in recs:
            way = "rolling back" if rec.direction is Direction.BACK else "forward"
            console.print(f"resuming release #{rec.id}: {rec.app} {rec.version} ({rec.env}), {rec.state.value}; "
                          f"it goes on {way}")
        if wait:
            finals = [_drive_and_watch(gl, r.id) for r in recs]
            raise typer.Exit(0 if all(f.state in (ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK)
                                      for f in finals) else 1)
        for rec in recs:
            _spawn_worker(gl, rec.id)

    guarded(body)


@app.command()
def retry(release_id: str, wait: WaitOpt = False, config: ConfigOpt = None) -> None:
    """Release again to the failed and skipped hosts of a paused release, then go on."""

    def body() -> None:
        gl = _gl(config)
        rec = gl.retry(_release_id(release_id))
        way = "rolling back" if rec.direction is Direction.BACK else f"forward to {rec.version}"
        console.print(f"release #{rec.id}: {rec.message}; it goes on {way}")
        _finish(gl, rec, wait)

    guarded(body)


@app.command()
def history(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt,
            config: ConfigOpt = None) -> None:
    """Releases and deployed versions of an app in an environment, newest first."""

    def body() -> None:
        gl = _gl(config)
        table = Table("#", "kind", "version", "from", "state", "by", "started", "finished", "message")
        for r in gl.store.list_releases(app_name, env):
            table.add_row(str(r.id), r.kind, r.version, r.previous_version or "", _styled(r.state), r.started_by,
                          f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                          f"{r.finished_at:%H:%M:%S}" if r.finished_at else "", r.message[:60])
        console.print(table)
        current = gl.store.current_version(app_name, env)
        console.print(f"current version: {current or '(none)'}")

    guarded(body)


@app.command(hidden=True)
def worker(release_id: int, config: ConfigOpt = None) -> None:
    """Drive one release to a safe stop (spawned by release/resume)."""

    def body() -> None:
        gl = _gl(config)
        rec = asyncio.run(gl.engine().drive(release_id))
        print(f"release #{rec.id} {rec.state}: {rec.message}", flush=True)

    guarded(body)


# --- lab ---------------------------------------------------------------------------------------


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
    console.print(f"next: graylift -c {info.config_path} hosts import {info.hosts_file} --app pyapp --env prod")


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


def main() -> Any:
    # the global --config may come before the command: move it after, where each command takes it
    argv = sys.argv[1:]
    if len(argv) > 2 and argv[0] in ("-c", "--config"):
        sys.argv = [sys.argv[0], *argv[2:], argv[0], argv[1]]
    return app()
