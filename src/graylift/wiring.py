"""Builds the adapters of one release from its config snapshot.

A release keeps a JSON snapshot of its app's config (taken when it started), so a controller that
resumes it after a crash or an upgrade drives it with the config it started with. Each entry of the
app's ``traffic``, ``monitoring`` and ``inventory`` is built by its backend module, found by its ``type``
in the port's registry (:mod:`graylift.adapters.registry`); nothing here knows a backend by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from graylift.adapters.artifacts import auth_from_config, store_from_config
from graylift.adapters.health import probes_from_config
from graylift.adapters.inventory import INVENTORY
from graylift.adapters.monitoring import MONITORING
from graylift.adapters.monitoring.prometheus import PrometheusMetrics
from graylift.adapters.registry import Build, Connect, secret
from graylift.adapters.traffic import TRAFFIC
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.adapters.transport.peer import ShellPeer
from graylift.adapters.transport.ssh import SshConfig, SshConnector
from graylift.config import AppConfig, GrayliftConfig, render_command
from graylift.core.model import Host, Package
from graylift.ports import Inventory, Silencer, TrafficSwitch, Transport
from graylift.runtime import AppRuntime, TrafficCheck
from graylift.store import ReleaseRecord, Store


def snapshot(config: GrayliftConfig, app: str, env: str) -> dict[str, Any]:
    """The JSON the release keeps: the app's config for this env (repository resolved) and SSH settings."""
    app_cfg = config.app_for_env(app, env)
    resolved = app_cfg.resolved_package(config)
    app_json = app_cfg.model_dump(mode="json", exclude={"envs"})
    app_json["package"] = {k: v for k, v in resolved.model_dump(mode="json").items()
                           if v is not None and k != "repository"}
    return {"app": app_json, "ssh": config.ssh.model_dump(mode="json"), "env": env}


def app_config(snap: dict[str, Any]) -> AppConfig:
    return AppConfig.from_snapshot(snap["app"])


def traffic_switches(cfg: AppConfig, app: str = "", *, connect: Connect | None = None,
                     hosts: Sequence[Host] | None = None) -> list[TrafficSwitch]:
    """One switch per ``traffic`` entry, in order. ``connect`` reaches SSH hosts (nginx ``lb_host``,
    command ``run_on: host``); ``hosts`` seeds a missing nginx include (``seed: true``)."""
    return [TRAFFIC.build(entry, Build(f"traffic[{index}]", app=app, connect=connect, hosts=hosts))
            for index, entry in enumerate(cfg.traffic)]


def silencers(cfg: AppConfig) -> tuple[list[Silencer], float]:
    """The silencers and how long each silence lasts: the shortest ``silence_minutes`` (default 30)."""
    found = [MONITORING.build(entry, Build(f"monitoring[{index}]")) for index, entry in enumerate(cfg.monitoring)]
    minutes = [entry.silence_minutes for entry in cfg.monitoring]
    return found, (min(minutes) if minutes else 30.0) * 60


def inventory_for(cfg: AppConfig, store: Store) -> Inventory:
    """The app's CMDB. A token variable is read here, so a missing one is a ConfigError before planning."""
    return INVENTORY.build(cfg.inventory, Build("inventory", store=store))


def runtime(app: str, env: str, cfg: AppConfig, *, connect: Connect | None = None,
            hosts: Sequence[Host] | None = None) -> AppRuntime:
    """The app's adapters for one release; ``connect`` and ``hosts`` as for :func:`traffic_switches`."""
    mutes, silence_seconds = silencers(cfg)
    return AppRuntime(
        app=app, env=env, deploy_dir=cfg.deploy.dir, keep_releases=cfg.deploy.keep_releases,
        start_command=cfg.commands.start, stop_command=cfg.commands.stop,
        command_timeout=cfg.commands.timeout, drain_command=cfg.commands.drain,
        probes=[], probes_for=partial(probes_from_config, cfg.health),
        health_retries=cfg.health.retries, health_interval=cfg.health.interval,
        switches=traffic_switches(cfg, app, connect=connect, hosts=hosts), silencers=mutes,
        silence_seconds=silence_seconds,
        quiet_period=cfg.quiet_period, strategy=cfg.strategy_model(), render=render_command,
        artifact_auth=auth_from_config(cfg.package), rebuilt_versions=cfg.package.rebuilt_versions,
        deploy_dirs=lambda transport: ShellDeployDir(transport, cfg.deploy.dir),
        peers=lambda transport: ShellPeer(transport, cfg.deploy.dir), fuse_host_commands=True,
        traffic_check=(TrafficCheck(cfg.traffic_check.port, cfg.traffic_check.window,
                                    frozenset(cfg.traffic_check.allowed)) if cfg.traffic_check else None),
        metrics=PrometheusMetrics(analysis.prometheus) if (analysis := cfg.strategy.canary.analysis) else None,
    )


class LiveFleet:
    """The real adapters of one release (or of a plan's preflight), built from a config snapshot."""

    def __init__(self, snap: dict[str, Any], app: str, env: str, hosts: Sequence[Host], *,
                 connectors: dict[str, Any] | None = None) -> None:
        """``connectors``: SSH connectors shared by several fleets (keyed by their settings), which the
        sharer closes; without it the fleet has its own and closes it."""
        cfg = app_config(snap)
        ssh = SshConfig.model_validate(snap["ssh"])
        self._owns_connector = connectors is None
        if connectors is None:
            self.connector = SshConnector(ssh)
        else:
            key = ssh.model_dump_json()
            if key not in connectors:
                connectors[key] = SshConnector(ssh)
            self.connector = connectors[key]
        self.runtime = runtime(app, env, cfg, connect=self.connect, hosts=list(hosts))
        self.artifacts = store_from_config(cfg.package)
        self.app = app

    @classmethod
    def for_release(cls, store: Store, rec: ReleaseRecord) -> LiveFleet:
        return cls(rec.config, rec.app, rec.env, [r.host_spec for r in store.host_runs(rec.id)])

    async def connect(self, host: Host) -> Transport:
        return await self.connector.connect(host)

    async def package(self, version: str) -> Package:
        return await self.artifacts.resolve(self.app, version)

    async def close(self) -> None:
        if self._owns_connector:
            await self.connector.close()
        for switch in self.runtime.switches:
            await switch.close()
        for silencer in self.runtime.silencers:
            await silencer.close()


async def open_fleet(store: Store, rec: ReleaseRecord) -> LiveFleet:
    return LiveFleet.for_release(store, rec)


__all__ = [
    "LiveFleet",
    "app_config",
    "inventory_for",
    "open_fleet",
    "runtime",
    "secret",
    "silencers",
    "snapshot",
    "traffic_switches",
]
