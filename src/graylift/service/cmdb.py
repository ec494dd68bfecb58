"""The CMDB side of the service: host lists, the read-only survey, host health."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graylift.core.hostdiff import HostListDiff, diff_hosts
from graylift.core.model import Host
from graylift.errors import ReleaseConflict
from graylift.service.base import ServiceBase
from graylift.store import HostHealth

if TYPE_CHECKING:
    from graylift.preflight import HostReport


def parse_hosts_file(path: Path) -> list[Host]:
    """A YAML or Ansible (INI/YAML) inventory file's hosts (:mod:`graylift.adapters.inventory.hostfile`)."""
    from graylift.adapters.inventory.hostfile import load_hosts_file

    return load_hosts_file(path)


@dataclass(frozen=True)
class SurveyRow:
    """One host as `graylift hosts survey` shows it: what it runs and serves, what a release would do."""

    host: Host
    layout: str
    version: str | None
    sha256: str | None
    serving: str
    would: str


class CmdbService(ServiceBase):

    def import_hosts(self, app: str, env: str, hosts: list[Host], *, dry_run: bool = False) -> HostListDiff:
        """Make ``hosts`` the host list of app/env; what that adds, removes and changes.

        Hosts in maintenance stay in maintenance; a host that the active release of app/env runs on is never
        removed (the import is refused). ``dry_run``: only say what the import would do.
        """
        diff = diff_hosts(self.store.list_hosts(app, env), hosts)
        active = self.store.active_release(app, env)
        if active is not None and diff.removed:
            busy = {run.host for run in self.store.host_runs(active.id)}
            blocked = [h.name for h in diff.removed if h.name in busy]
            if blocked:
                raise ReleaseConflict(
                    f"release #{active.id} of {app} ({env}) is {active.state.value} and runs on {', '.join(blocked)}: "
                    "an import cannot remove them; let the release finish (or abort it), then import again")
        if not dry_run:
            self.store.replace_hosts(app, env, list(diff.result))
        return diff

    def import_hosts_file(self, path: Path, app: str, env: str, *, dry_run: bool = False) -> HostListDiff:
        """Replace the app/env host list with a YAML or Ansible (INI/YAML) inventory file, as import_hosts does."""
        return self.import_hosts(app, env, parse_hosts_file(path), dry_run=dry_run)

    def list_hosts(self, app: str, env: str) -> list[Host]:
        return self.store.list_hosts(app, env)

    def set_maintenance(self, app: str, env: str, host: str, *, in_service: bool) -> None:
        self.store.set_in_service(app, env, host, in_service)

    async def survey(self, app: str, env: str, version: str | None = None) -> list[SurveyRow]:
        """Read-only: what each host runs and serves, the layout found, what a release would do."""
        from graylift.preflight import survey_hosts
        from graylift.wiring import inventory_for, snapshot

        cfg = self.config.app_for_env(app, env)
        hosts = await inventory_for(cfg, self.store).hosts(app, env)
        fleet = self._fleet(snapshot(self.config, app, env), app, env, hosts)
        try:
            reports = await survey_hosts(fleet, hosts, with_health=True)
        finally:
            await fleet.close()
        attention = self.store.host_health(app, env)
        return [_survey_row(reports[h.name], version, attention.get(h.name)) for h in hosts]

    def clear_host(self, app: str, env: str, host: str) -> bool:
        return self.store.clear_host_health(app, env, host)


def _survey_row(report: HostReport, version: str | None, attention: HostHealth | None) -> SurveyRow:
    host, found = report.host, report.found
    if found is None:
        return SurveyRow(host, "unreadable", None, None, "?", f"refuse: {report.problem}")
    healthy = report.healthy
    serving = "yes" if healthy and healthy.ok else f"no ({healthy.detail if healthy else 'not checked'})"
    if not host.in_service:
        would = "skip: in maintenance"
    elif attention is not None:
        would = f"release (counted as out: needs attention since release #{attention.release_id})"
    elif version is not None and found.version == version and serving == "yes":
        would = f"nothing: already on {version}"
    elif found.fresh:
        would = "first install"
    elif serving != "yes":
        would = "skip: unhealthy before release (or fail, by strategy.on_unhealthy)"
    else:
        would = f"release {found.version} -> {version or 'VERSION'}"
    layout = "fresh" if found.fresh else f"current -> releases/{found.current_dir}"
    return SurveyRow(host, layout, found.version, found.sha256, serving, would)


__all__ = ["CmdbService", "SurveyRow", "parse_hosts_file"]
