"""Builds the adapters of one release from its config snapshot: the only place that maps config to backends.

A release keeps a JSON snapshot of its app's config (taken when it started), so a controller that
resumes it after a crash or an upgrade drives it with the config it started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graylift.adapters.alertmanager import AlertmanagerSilencer
from graylift.adapters.artifacts import HttpArtifactStore, LocalDirArtifactStore
from graylift.adapters.haproxy import HaproxySwitch
from graylift.adapters.health import CommandProbe, HttpProbe, ProcessProbe, TcpProbe
from graylift.adapters.ssh import SshConnector
from graylift.adapters.zookeeper import ZookeeperSwitch
from graylift.config import AppConfig, GrayliftConfig, SshConfig, render_command, render_template
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import ArtifactError, ConfigError
from graylift.ports import ArtifactStore, HealthProbe, Silencer, TrafficSwitch, Transport
from graylift.steps import AppRuntime
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
    return AppConfig.model_validate(snap["app"])


def artifact_store(cfg: AppConfig) -> ArtifactStore:
    p = cfg.package
    kind = PackageKind(p.type)
    if p.local_dir is not None:
        return LocalDirArtifactStore(directory=Path(p.local_dir), kind=kind)
    if p.url is None:
        raise ConfigError("package needs url, local_dir or repository", field="package")
    return HttpArtifactStore(url_template=p.url, kind=kind, sha256_url_template=p.sha256_url or "{url}.sha256",
                             sha256=p.sha256)


def traffic_switches(cfg: AppConfig) -> list[TrafficSwitch]:
    switches: list[TrafficSwitch] = []
    for entry in cfg.traffic:
        if entry.type == "haproxy":
            switches.append(HaproxySwitch(socket=entry.socket, backend=entry.backend,
                                          server_template=entry.server, drain_timeout=entry.drain_timeout))
        elif entry.type == "zookeeper":
            switches.append(ZookeeperSwitch(hosts=entry.hosts, service=entry.service, port=entry.port,
                                            root=entry.root, propagation_seconds=entry.propagation_seconds))
        else:  # pragma: no cover - the config union admits no other type yet
            raise ConfigError(f"traffic type {entry.type!r} has no adapter", field="traffic")
    return switches


def silencers(cfg: AppConfig) -> tuple[list[Silencer], float]:
    found: list[Silencer] = []
    seconds = 1800.0
    for entry in cfg.monitoring:
        if entry.type == "alertmanager":
            found.append(AlertmanagerSilencer(url=str(entry.url), label=entry.label, value_template=entry.value))
            seconds = min(seconds, entry.silence_minutes * 60) if found[:-1] else entry.silence_minutes * 60
    return found, seconds


def probes(cfg: AppConfig, app: str) -> list[HealthProbe]:
    h = cfg.health
    values = {"app": app}
    found: list[HealthProbe] = []
    if h.process:
        found.append(ProcessProbe(h.process, timeout=h.timeout))
    if h.tcp_port:
        found.append(TcpProbe(h.tcp_port, timeout=h.timeout))
    if h.http:
        found.append(HttpProbe(str(h.http.url), status=h.http.status, body=h.http.body, timeout=h.timeout))
    if h.command:
        found.append(CommandProbe(render_command(h.command, values | {"version": "", "deploy_dir": cfg.deploy.dir,
                                                                        "current": cfg.deploy.dir + "/current",
                                                                        "release_dir": "", "host": "",
                                                                        "address": ""}),
                                  timeout=h.timeout))
    return found


def runtime(app: str, env: str, cfg: AppConfig) -> AppRuntime:
    mutes, silence_seconds = silencers(cfg)
    return AppRuntime(
        app=app, env=env, deploy_dir=cfg.deploy.dir, keep_releases=cfg.deploy.keep_releases,
        start_command=cfg.commands.start, stop_command=cfg.commands.stop,
        command_timeout=cfg.commands.timeout, drain_command=cfg.commands.drain,
        probes=probes(cfg, app), health_retries=cfg.health.retries, health_interval=cfg.health.interval,
        switches=traffic_switches(cfg), silencers=mutes, silence_seconds=silence_seconds,
        quiet_period=cfg.quiet_period, strategy=cfg.strategy_model(), render=render_command,
    )


def connector(snap: dict[str, Any]) -> SshConnector:
    ssh = SshConfig.model_validate(snap["ssh"])
    return SshConnector(known_hosts=Path(ssh.known_hosts), client_key=Path(ssh.key) if ssh.key else None,
                        connect_timeout=ssh.connect_timeout, command_timeout=ssh.command_timeout,
                        max_connections=ssh.max_connections)


def package_to_json(pkg: Package) -> dict[str, Any]:
    return {"app": pkg.app, "version": pkg.version, "kind": pkg.kind.value, "filename": pkg.filename,
            "sha256": pkg.sha256, "url": pkg.url, "local_path": pkg.local_path}


def package_from_json(data: dict[str, Any]) -> Package:
    return Package(data["app"], data["version"], PackageKind(data["kind"]), data["filename"], data["sha256"],
                   url=data.get("url"), local_path=data.get("local_path"))


class LiveFleet:
    """The real adapters of one release. Package digests are pinned in the release's plan once resolved."""

    def __init__(self, store: Store, rec: ReleaseRecord) -> None:
        cfg = app_config(rec.config)
        self.store, self.release_id = store, rec.id
        self.runtime = runtime(rec.app, rec.env, cfg)
        self.artifacts = artifact_store(cfg)
        self.connector = connector(rec.config)
        self.app = rec.app

    async def connect(self, host: Host) -> Transport:
        return await self.connector.connect(host)

    async def package(self, version: str) -> Package:
        rec = self.store.get_release(self.release_id)
        pinned = rec.plan.get("packages", {})
        if version in pinned:
            return package_from_json(pinned[version])
        try:
            pkg = await self.artifacts.resolve(self.app, version)
        except ArtifactError:
            raise
        plan = dict(rec.plan)
        plan["packages"] = {**pinned, version: package_to_json(pkg)}
        self.store.update_release(self.release_id, plan=plan)
        return pkg

    async def close(self) -> None:
        await self.connector.close()
        for switch in self.runtime.switches:
            close = getattr(switch, "close", None)
            if close is not None:
                await close()
        for silencer in self.runtime.silencers:
            close = getattr(silencer, "close", None)
            if close is not None:
                await close()


async def open_fleet(store: Store, rec: ReleaseRecord) -> LiveFleet:
    return LiveFleet(store, rec)


__all__ = ["LiveFleet", "open_fleet", "render_template", "snapshot"]
