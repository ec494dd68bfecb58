"""The CLI through a server (``graylift --server URL ...``, or ``GRAYLIFT_SERVER``): the same commands and
output, with the server's rules (roles, approvals, freeze windows, audit) applied to every one.

:class:`RemoteGraylift` answers the calls the CLI makes of :class:`graylift.service.Graylift` over the HTTP
API and rebuilds the same records, so the CLI's rendering is unchanged. Errors come back as the problem's
``error`` class with its message (exit codes stay the same). The token comes from ``GRAYLIFT_TOKEN`` or
``~/.config/graylift/client.yaml`` (``server:`` and ``token:``; a file others can read is refused).

Releases are driven by the server's workers: ``--wait`` follows the release's journal until it finishes or
pauses, and a release that needs approval waits for it (``GRAYLIFT_APPROVAL_WAIT`` seconds, default 3600).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from graylift import errors
from graylift.client_options import CLIENT_FILE, SERVER_ENV, TOKEN_ENV
from graylift.core.model import Host
from graylift.core.plan import Plan
from graylift.core.state import Direction, HostState, ReleaseKind, ReleaseState, Request
from graylift.journal_lines import Shown
from graylift.preflight import HostReport, Report
from graylift.service import HostRunRecord, JournalEntry, PlanView, ReleaseRecord, SurveyRow
from graylift.store import HostHealth

POLL = 0.5


def remote_from_env() -> RemoteGraylift | None:
    """A RemoteGraylift when a server is named (GRAYLIFT_SERVER or the client file), else None."""
    server, token = os.environ.get(SERVER_ENV), os.environ.get(TOKEN_ENV)
    path = CLIENT_FILE.expanduser()
    if path.exists() and (not server or not token):
        if path.stat().st_mode & 0o077:
            raise errors.ConfigError(f"{path} holds a token and others can read it; chmod 600 {path}")
        data = yaml.safe_load(path.read_text()) or {}
        server, token = server or data.get("server"), token or data.get("token")
    if not server:
        return None
    if not token:
        raise errors.ConfigError(f"no API token for {server}: set {TOKEN_ENV} or put `token:` in {path}")
    return RemoteGraylift(str(server), str(token))


def _error(response: httpx.Response) -> errors.GrayliftError:
    try:
        body = response.json()
    except ValueError:
        return errors.GrayliftError(f"the server answered {response.status_code}: {response.text[:200]}")
    name, detail = str(body.get("error", "")), str(body.get("detail", response.text[:200]))
    if name == "PreflightFailed":
        return errors.PreflightFailed(list(body.get("problems") or [detail]))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.GrayliftError) and name not in ("TransportError",
                                                                                       "CommandTimeout",
                                                                                       "RemoteCommandFailed",
                                                                                       "BackendsFailed"):
        return cls(detail)
    if name in ("ConfigError", "InputError"):
        return errors.ConfigError(detail)
    return errors.StateError(detail) if response.status_code in (403, 409, 423) else errors.GrayliftError(detail)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def release_from(data: dict[str, Any]) -> ReleaseRecord:
    plan = {"batches": data["batches"], "skipped": data["skipped"]}
    return ReleaseRecord(
        id=data["id"], app=data["app"], env=data["env"], kind=ReleaseKind(data["kind"]), version=data["version"],
        previous_version=data["previous_version"], state=ReleaseState(data["state"]), plan=plan, config={},
        cursor=0, phase=data["phase"], wait_until=_when(data["wait_until"]), message=data["message"],
        requested=Request(data["requested"]) if data["requested"] else None, owner=data["controller"],
        heartbeat_at=None, started_by=data["started_by"], created_at=_when(data["created_at"]) or datetime.now(UTC),
        updated_at=_when(data["updated_at"]) or datetime.now(UTC), finished_at=_when(data["finished_at"]),
        direction=Direction(data["direction"]))


@dataclass(frozen=True)
class ImportedHosts:
    """A host import as the server answers it; reads as a HostListDiff does (count, lines(), summary())."""

    count: int
    lines_: tuple[str, ...]
    summary_: str

    def lines(self) -> list[str]:
        return list(self.lines_)

    def summary(self) -> str:
        return self.summary_


class RemoteGraylift:
    """What the CLI asks of the service, asked of a server."""

    def __init__(self, server: str, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, timeout=300, trust_env=False, transport=transport,
                                 headers={"Authorization": f"Bearer {token}", "X-Graylift-Trigger": "cli"})
        self._gone: dict[int, bool] = {}
        self.config_path = Path(f"{self.server} (server)")
        self.config_problem: str | None = None  # the server loads its own config and says what is wrong in it
        self.state_location = "the graylift server"  # its state database is the server's, not named to clients

    def check_app(self, app: str, env: str | None = None) -> None:
        """Nothing here: the server checks app and env names itself and answers an unknown one with the names
        it knows."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.GrayliftError(f"cannot reach the graylift server {self.server}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else None

    def _release(self, data: dict[str, Any]) -> ReleaseRecord:
        self._gone[data["id"]] = bool(data.get("controller_gone"))
        return release_from(data)

    def close(self) -> None:
        self.http.close()

    # --- planning and starting ---------------------------------------------------------------------
    async def plan(self, app: str, env: str, version: str | None = None, **_: Any) -> PlanView:
        data = self._call("POST", "/api/v1/plans", json={"app": app, "env": env, "version": version})
        plan = Plan.from_dict({"batches": data["batches"], "skipped": data["skipped"],
                               "cluster_size": data["cluster_size"], "estimate_seconds": data["estimate_seconds"]})
        report = Report(problems=list(data["problems"]), notes=list(data["notes"]),
                        hosts={h["name"]: HostReport(Host(h["name"], h["name"])) for h in data["hosts"]})
        now = datetime.now(UTC)
        attention = {h: HostHealth(app, env, h, "needs_attention", reason, {}, 0, now)
                     for h, reason in data["attention"].items()}
        return PlanView(app, env, version, plan, [], data["previous_version"], report=report, attention=attention)

    async def start_release(self, app: str, env: str, version: str, *, started_by: str = "",
                            **local_only: object) -> ReleaseRecord:
        _local_only(local_only)
        return self._started(self._call("POST", "/api/v1/releases", json={"app": app, "env": env,
                                                                            "version": version}))

    async def start_rollback(self, app: str, env: str, *, to_version: str | None, started_by: str = "",
                             **local_only: object) -> ReleaseRecord:
        _local_only(local_only)
        return self._started(self._call("POST", f"/api/v1/apps/{app}/envs/{env}/rollback", json={"to": to_version}))

    def _started(self, data: dict[str, Any]) -> ReleaseRecord:
        if data.get("release"):
            return self._release(data["release"])
        return self._await_approval(data["request"])

    def _await_approval(self, request: dict[str, Any]) -> ReleaseRecord:
        import sys

        limit = float(os.environ.get("GRAYLIFT_APPROVAL_WAIT", "3600"))
        print(f"request #{request['id']}: {request['message']}; waiting up to {limit:g}s "
              f"({self.server}/approvals)", file=sys.stderr, flush=True)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            request = self._call("GET", f"/api/v1/requests/{request['id']}")
            if request["state"] == "started":
                return self.release(int(request["release_id"]))
            if request["state"] in ("rejected", "cancelled", "expired"):
                raise errors.StateError(f"release request #{request['id']} {request['state']}: {request['message']}")
            time.sleep(POLL * 4)
        raise errors.StateError(f"release request #{request['id']} is still {request['state']} after {limit:g}s")

    # --- control ---------------------------------------------------------------------------------
    def release(self, release_id: int) -> ReleaseRecord:
        return self._release(self._call("GET", f"/api/v1/releases/{release_id}"))

    def request(self, release_id: int, action: str | Request) -> ReleaseRecord:
        return self._release(self._call("POST", f"/api/v1/releases/{release_id}/{Request(action).value}", json={}))

    def resume(self, release_id: int) -> ReleaseRecord:
        return self.request(release_id, Request.RESUME)

    def retry(self, release_id: int) -> ReleaseRecord:
        return self.request(release_id, Request.RETRY)

    def find(self, ref: str, env: str | None) -> ReleaseRecord:
        if ref.isdigit():
            return self.release(int(ref))
        if env is None:
            raise errors.StateError(f"give --env to find the release of {ref}")
        active = self._call("GET", f"/api/v1/apps/{ref}/envs/{env}")["active_release"]
        if active:
            return self._release(active)
        found = self.list_releases(ref, env, limit=1)
        if not found:
            raise errors.ReleaseNotFound(f"no release of {ref} in {env} yet")
        return found[0]

    def hand_off(self, release_id: int) -> Path:
        return Path(f"{self.server}/releases/{release_id}")  # the server's workers drive it

    def needs_hand_off(self, rec: ReleaseRecord) -> bool:
        return False

    def controller_gone(self, rec: ReleaseRecord) -> bool:
        return self._gone.get(rec.id, False)

    def follow(self, release_id: int, on_entry: Callable[[JournalEntry], None], *, poll: float = POLL,
               until_paused: bool = False, shown: Shown | None = None) -> ReleaseRecord:
        """Hand ``on_entry`` each new journal entry (of those ``shown``, when given) until the release finishes
        (or, ``until_paused``, pauses)."""
        last = 0

        def new_entries() -> None:
            nonlocal last
            for entry in self.journal(release_id, last):
                last = entry.id
                if shown is None or entry in shown:
                    on_entry(entry)

        while True:
            new_entries()
            rec = self.release(release_id)
            if rec.finished or (until_paused and rec.state is ReleaseState.PAUSED):
                new_entries()
                return rec
            time.sleep(poll)

    def drive(self, release_id: int, on_entry: Callable[[JournalEntry], None] | None = None, *,
              shown: Shown | None = None) -> ReleaseRecord:
        """``--wait`` through a server: follow until the release finishes or pauses (the server drives it)."""
        return self.follow(release_id, on_entry or (lambda e: None), until_paused=True, shown=shown)

    async def drive_here(self, release_id: int, on_entry: Callable[[JournalEntry], None] | None = None, *,
                         shown: Shown | None = None) -> ReleaseRecord:
        """:meth:`drive` from a running event loop (``release --wait`` starts and drives in one)."""
        return await asyncio.to_thread(functools.partial(self.drive, release_id, on_entry, shown=shown))

    @contextlib.asynccontextmanager
    async def sharing_connections(self) -> AsyncIterator[None]:
        """Nothing to share here: the server holds the hosts' connections."""
        yield

    # --- reads ---------------------------------------------------------------------------------
    def active_releases(self) -> list[ReleaseRecord]:
        return [self._release(a["active_release"]) for a in self._call("GET", "/api/v1/apps") if a["active_release"]]

    def orphaned_releases(self) -> list[ReleaseRecord]:
        return [r for r in self.active_releases() if self.controller_gone(r)]

    def list_releases(self, app: str, env: str, limit: int = 50) -> list[ReleaseRecord]:
        data = self._call("GET", "/api/v1/releases", params={"app": app, "env": env, "limit": limit})
        return [self._release(r) for r in data["items"]]

    def host_runs(self, release_id: int) -> list[HostRunRecord]:
        return [HostRunRecord(release_id=release_id, host=h["host"], address=h["address"], batch=h["batch"],
                              state=HostState(h["state"]), step=h["step"], done_steps=tuple(h["done_steps"]),
                              target_version=h["target_version"], previous_version=h["previous_version"],
                              error=h["error"], started_at=_when(h["started_at"]), finished_at=_when(h["finished_at"]),
                              attention=h["attention"])
                for h in self._call("GET", f"/api/v1/releases/{release_id}/hosts")]

    def journal(self, release_id: int, since_id: int = 0, *, steps: tuple[str, ...] | None = None,
                event: str | None = None) -> list[JournalEntry]:
        """As the service's: entries after ``since_id``, of ``steps`` and ``event`` when given (the API sends
        every entry; they are picked here)."""
        return [JournalEntry(id=e["id"], release_id=release_id, host=e["host"], step=e["step"], event=e["event"],
                             detail=e["detail"], at=_when(e["at"]) or datetime.now(UTC))
                for e in self._call("GET", f"/api/v1/releases/{release_id}/journal", params={"after": since_id})
                if (steps is None or e["step"] in steps) and (event is None or e["event"] == event)]

    def current_version(self, app: str, env: str) -> str | None:
        return self._call("GET", f"/api/v1/apps/{app}/envs/{env}")["current_version"]  # type: ignore[no-any-return]

    # --- hosts ---------------------------------------------------------------------------------
    def import_hosts_file(self, path: Path, app: str, env: str, *, dry_run: bool = False) -> ImportedHosts:
        fmt = "ini" if path.suffix in (".ini", ".cfg", "") and not path.read_text().lstrip().startswith(
            ("all:", "hosts:", "-")) else "yaml"
        data = self._call("PUT", f"/api/v1/apps/{app}/envs/{env}/hosts", json={"inventory": path.read_text(),
                                                                                "format": fmt},
                          params={"dry_run": "true" if dry_run else "false"})
        return ImportedHosts(int(data["imported"]), tuple(data["lines"]), data["summary"])

    def list_hosts(self, app: str, env: str) -> list[Host]:
        return [Host(h["name"], h["address"], port=h["port"], user=h["user"], group=h["group"], tags=h["tags"],
                     in_service=h["in_service"]) for h in self._call("GET", f"/api/v1/apps/{app}/envs/{env}/hosts")]

    def set_maintenance(self, app: str, env: str, host: str, *, in_service: bool) -> None:
        self._call("POST", f"/api/v1/apps/{app}/envs/{env}/hosts/{host}/maintenance", json={"in_service": in_service})

    def clear_host(self, app: str, env: str, host: str) -> bool:
        return bool(self._call("POST", f"/api/v1/apps/{app}/envs/{env}/hosts/{host}/clear")["cleared"])

    async def survey(self, app: str, env: str, version: str | None = None) -> list[SurveyRow]:
        rows = self._call("POST", f"/api/v1/apps/{app}/envs/{env}/survey", json={"version": version})
        return [SurveyRow(Host(r["host"], r["host"]), r["layout"], r["version"], r["sha256"], r["serving"], r["would"])
                for r in rows]


def _local_only(options: dict[str, object]) -> None:
    """Options the server's API does not take yet (--outside-window, --migration, --override-migration)."""
    given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
    if given:
        raise errors.UsageError(f"{', '.join(given)}: not available through --server yet; run the command where "
                                "the config and the state database are")
