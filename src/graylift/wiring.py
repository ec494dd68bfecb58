"""Builds the adapters of one release from its config snapshot: the only place that maps config to backends.

A release keeps a JSON snapshot of its app's config (taken when it started), so a controller that
resumes it after a crash or an upgrade drives it with the config it started with.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from graylift.adapters.artifacts import ArtifactAuth, HttpArtifactStore, LocalDirArtifactStore
from graylift.adapters.health import CommandProbe, HttpProbe, ProcessProbe, TcpProbe
from graylift.adapters.inventory.builtin import BuiltinInventory
from graylift.adapters.inventory.http import HttpJsonInventory
from graylift.adapters.inventory.netbox import NetboxInventory
from graylift.adapters.monitoring.alertmanager import AlertmanagerSilencer
from graylift.adapters.monitoring.command import CommandSilencer
from graylift.adapters.monitoring.zabbix import ZabbixSilencer
from graylift.adapters.traffic.command import CommandSwitch
from graylift.adapters.traffic.consul import ConsulSwitch
from graylift.adapters.traffic.dubbo3 import Dubbo3Switch
from graylift.adapters.traffic.etcd import EtcdSwitch
from graylift.adapters.traffic.eureka import EurekaSwitch
from graylift.adapters.traffic.haproxy import HaproxySwitch
from graylift.adapters.traffic.nacos import NacosSwitch
from graylift.adapters.traffic.nginx import NginxSwitch
from graylift.adapters.traffic.nginx_plus import NginxPlusSwitch
from graylift.adapters.traffic.zookeeper import ZookeeperSwitch
from graylift.adapters.transport.local import LocalTransport
from graylift.adapters.transport.ssh import SshConnector
from graylift.config import (
    AlertmanagerMonitoring,
    AppConfig,
    BuiltinInventoryConfig,
    CommandTraffic,
    ConsulTraffic,
    Dubbo3Traffic,
    EtcdTraffic,
    EurekaTraffic,
    GrayliftConfig,
    HaproxyTraffic,
    MonitoringEntry,
    NacosTraffic,
    NetboxInventoryConfig,
    NginxPlusTraffic,
    NginxTraffic,
    SshConfig,
    TrafficEntry,
    ZabbixMonitoring,
    ZookeeperTraffic,
    render_command,
    render_template,
)
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import ConfigError
from graylift.ports import ArtifactStore, HealthProbe, Inventory, Silencer, TrafficSwitch, Transport
from graylift.steps import AppRuntime, TrafficCheck
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


def artifact_auth(cfg: AppConfig) -> ArtifactAuth | None:
    """The repository credentials, read from the environment variables the config names (never stored)."""
    p = cfg.package
    try:
        if p.token_env is not None:
            return ArtifactAuth.bearer(secret(p.token_env, "package.token_env") or "")
        if p.username is not None:
            return ArtifactAuth.basic(p.username, secret(p.password_env, "package.password_env") or "")
    except ValueError as exc:
        raise ConfigError(str(exc), field="package") from None
    return None


def artifact_store(cfg: AppConfig) -> ArtifactStore:
    p = cfg.package
    kind = PackageKind(p.type)
    if p.local_dir is not None:
        return LocalDirArtifactStore(directory=Path(p.local_dir), kind=kind)
    if p.url is None:
        raise ConfigError("package needs url, local_dir or repository", field="package")
    return HttpArtifactStore(url_template=p.url, kind=kind, sha256_url_template=p.sha256_url or "{url}.sha256",
                             sha256=p.sha256, auth=artifact_auth(cfg))


Connect = Callable[[Host], Awaitable[Transport]]
CONTROLLER = Host(name="controller", address="127.0.0.1")


def secret(variable: str | None, field: str) -> str | None:
    """The secret held by the environment variable a ``*_env`` field names (None when the field is unset).

    Read when an adapter is built, never stored: the release's config snapshot holds only the name.
    """
    if variable is None:
        return None
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(f"the environment variable {variable} is not set or empty; export {variable}=<secret> "
                          "in the environment graylift runs in", field=field)
    return value


def _nginx(entry: NginxTraffic, where: str, connect: Connect | None, hosts: Sequence[Host] | None) -> NginxSwitch:
    if entry.lb_host is None:
        controller = LocalTransport(CONTROLLER)

        async def factory() -> Transport:
            return controller
    else:
        if connect is None:
            raise ConfigError("lb_host needs the release's SSH connector", field=f"{where}.lb_host")
        lb = Host(name=entry.lb_host, address=entry.lb_host, port=entry.lb_port, user=entry.lb_user)

        async def factory() -> Transport:
            return await connect(lb)

    return NginxSwitch(transport_factory=factory, include_path=entry.include, upstream=entry.upstream,
                       port=entry.port, hosts=hosts if entry.seed else None, server_params=entry.server_params,
                       keepalive=entry.keepalive, nginx_bin=entry.nginx_bin, nginx_conf=entry.nginx_conf,
                       nginx_globals=entry.nginx_globals, reload_settle=entry.reload_settle, name=entry.name)


def _switch(entry: TrafficEntry, where: str, app: str, connect: Connect | None,
            hosts: Sequence[Host] | None) -> TrafficSwitch:
    if isinstance(entry, HaproxyTraffic):
        return HaproxySwitch(socket=entry.socket, backend=entry.backend, server_template=entry.server,
                             drain_timeout=entry.drain_timeout)
    if isinstance(entry, ZookeeperTraffic):
        return ZookeeperSwitch(hosts=entry.hosts, service=entry.service, port=entry.port, root=entry.root,
                               propagation_seconds=entry.propagation_seconds)
    if isinstance(entry, NginxTraffic):
        return _nginx(entry, where, connect, hosts)
    if isinstance(entry, NginxPlusTraffic):
        headers = dict(entry.headers)
        for header, variable in entry.headers_env.items():
            headers[header] = secret(variable, f"{where}.headers_env.{header}") or ""
        return NginxPlusSwitch(url=entry.url, upstream=entry.upstream, port=entry.port,
                               api_version=entry.api_version, drain_timeout=entry.drain_timeout,
                               up_timeout=entry.up_timeout, poll_interval=entry.poll_interval,
                               timeout=entry.timeout, headers=headers, name=entry.name)
    if isinstance(entry, CommandTraffic):
        return CommandSwitch(app=app, take_out=entry.take_out, put_back=entry.put_back, verify=entry.verify,
                             port=entry.port, in_flight=entry.in_flight, run_on=entry.run_on,
                             connect=connect if entry.run_on == "host" else None, timeout=entry.timeout,
                             name=entry.name)
    if isinstance(entry, EtcdTraffic):
        return EtcdSwitch(url=entry.url, service=entry.service, port=entry.port, key_template=entry.key_template,
                          mode=entry.mode, parked_prefix=entry.parked_prefix, status_field=entry.status_field,
                          out_value=entry.out_value, in_value=entry.in_value, username=entry.username,
                          password=secret(entry.password_env, f"{where}.password_env"),
                          propagation_seconds=entry.propagation_seconds, timeout=entry.timeout)
    if isinstance(entry, Dubbo3Traffic):
        return Dubbo3Switch(hosts=entry.hosts, application=entry.application, port=entry.port, root=entry.root,
                            group=entry.group, instances_root=entry.instances_root,
                            propagation_seconds=entry.propagation_seconds, timeout=entry.timeout)
    if isinstance(entry, NacosTraffic):
        return NacosSwitch(url=entry.url, service=entry.service, port=entry.port, namespace=entry.namespace,
                           group=entry.group, cluster=entry.cluster, ephemeral=entry.ephemeral,
                           username=entry.username, password=secret(entry.password_env, f"{where}.password_env"),
                           propagation_seconds=entry.propagation_seconds, timeout=entry.timeout)
    if isinstance(entry, ConsulTraffic):
        return ConsulSwitch(service=entry.service, port=entry.port or 0, agent_url=entry.agent_url,
                            service_id=entry.service_id, token=secret(entry.token_env, f"{where}.token_env"),
                            reason=entry.reason, propagation_seconds=entry.propagation_seconds,
                            timeout=entry.timeout)
    if isinstance(entry, EurekaTraffic):
        return EurekaSwitch(url=entry.url, app=entry.app, port=entry.port, instance_id=entry.instance_id,
                            username=entry.username, password=secret(entry.password_env, f"{where}.password_env"),
                            propagation_seconds=entry.propagation_seconds, timeout=entry.timeout)
    raise ConfigError(f"traffic type {entry.type!r} has no adapter", field=where)  # pragma: no cover


def traffic_switches(cfg: AppConfig, app: str = "", *, connect: Connect | None = None,
                     hosts: Sequence[Host] | None = None) -> list[TrafficSwitch]:
    """One switch per ``traffic`` entry, in order. ``connect`` reaches SSH hosts (nginx ``lb_host``,
    command ``run_on: host``); ``hosts`` seeds a missing nginx include (``seed: true``)."""
    return [_switch(entry, f"traffic[{index}]", app, connect, hosts) for index, entry in enumerate(cfg.traffic)]


def _silencer(entry: MonitoringEntry, where: str) -> Silencer:
    if isinstance(entry, AlertmanagerMonitoring):
        return AlertmanagerSilencer(url=entry.url, label=entry.label, value_template=entry.value)
    try:
        if isinstance(entry, ZabbixMonitoring):
            return ZabbixSilencer(url=entry.url, token=secret(entry.token_env, f"{where}.token_env"),
                                  username=entry.username,
                                  password=secret(entry.password_env, f"{where}.password_env"),
                                  host_template=entry.host, legacy_auth=entry.legacy_auth, timeout=entry.timeout)
        return CommandSilencer(mute_command=entry.mute_command, unmute_command=entry.unmute_command,
                               check_command=entry.check_command, timeout=entry.timeout, name=entry.name)
    except ValueError as exc:  # the models check the same rules at load time; kept as a ConfigError
        raise ConfigError(str(exc), field=where) from None


def silencers(cfg: AppConfig) -> tuple[list[Silencer], float]:
    """The silencers and how long each silence lasts: the shortest ``silence_minutes`` (default 30)."""
    found = [_silencer(entry, f"monitoring[{index}]") for index, entry in enumerate(cfg.monitoring)]
    minutes = [entry.silence_minutes for entry in cfg.monitoring]
    return found, (min(minutes) if minutes else 30.0) * 60


def inventory_for(cfg: AppConfig, store: Store) -> Inventory:
    """The app's CMDB. A token variable is checked here so a missing one is a ConfigError before planning;
    the NetBox / HTTP adapters read it themselves (never stored)."""
    inv = cfg.inventory
    if isinstance(inv, BuiltinInventoryConfig):
        return BuiltinInventory(store)
    secret(inv.token_env, "inventory.token_env")
    if isinstance(inv, NetboxInventoryConfig):
        return NetboxInventory(url=inv.url, token_env=inv.token_env, kinds=inv.kinds, filters=inv.filters,
                               group_from=inv.group_from, zone_from=inv.zone_from,
                               in_service_statuses=inv.in_service_statuses, user=inv.user, port=inv.port,
                               page_size=inv.page_size, timeout=inv.timeout, verify_tls=inv.verify_tls)
    return HttpJsonInventory(url=inv.url, token_env=inv.token_env, timeout=inv.timeout, verify_tls=inv.verify_tls)


def probes(cfg: AppConfig, values: Mapping[str, str]) -> list[HealthProbe]:
    """The app's health probes for one host: placeholders filled with that host's values
    (``{host}``, ``{address}``, ``{version}``, paths); ``health.command`` values shell-quoted."""
    h = cfg.health
    found: list[HealthProbe] = []
    if h.process:
        found.append(ProcessProbe(render_template(h.process, values), timeout=h.timeout))
    if h.tcp_port:
        found.append(TcpProbe(h.tcp_port, timeout=h.timeout))
    if h.http:
        found.append(HttpProbe(render_template(str(h.http.url), values), status=h.http.status, body=h.http.body,
                               timeout=h.timeout))
    if h.command:
        found.append(CommandProbe(render_command(h.command, values), timeout=h.timeout))
    return found


def runtime(app: str, env: str, cfg: AppConfig, *, connect: Connect | None = None,
            hosts: Sequence[Host] | None = None) -> AppRuntime:
    """The app's adapters for one release; ``connect`` and ``hosts`` as for :func:`traffic_switches`."""
    mutes, silence_seconds = silencers(cfg)
    return AppRuntime(
        app=app, env=env, deploy_dir=cfg.deploy.dir, keep_releases=cfg.deploy.keep_releases,
        start_command=cfg.commands.start, stop_command=cfg.commands.stop,
        command_timeout=cfg.commands.timeout, drain_command=cfg.commands.drain,
        probes=[], probes_for=partial(probes, cfg),
        health_retries=cfg.health.retries, health_interval=cfg.health.interval,
        switches=traffic_switches(cfg, app, connect=connect, hosts=hosts), silencers=mutes,
        silence_seconds=silence_seconds,
        quiet_period=cfg.quiet_period, strategy=cfg.strategy_model(), render=render_command,
        artifact_auth=artifact_auth(cfg), rebuilt_versions=cfg.package.rebuilt_versions,
        traffic_check=(TrafficCheck(cfg.traffic_check.port, cfg.traffic_check.window,
                                    frozenset(cfg.traffic_check.allowed)) if cfg.traffic_check else None),
    )


def connector(snap: dict[str, Any]) -> SshConnector:
    ssh = SshConfig.model_validate(snap["ssh"])
    return SshConnector(known_hosts=Path(ssh.known_hosts), client_key=Path(ssh.key) if ssh.key else None,
                        connect_timeout=ssh.connect_timeout, command_timeout=ssh.command_timeout,
                        max_connections=ssh.max_connections)


class LiveFleet:
    """The real adapters of one release (or of a plan's preflight), built from a config snapshot."""

    def __init__(self, snap: dict[str, Any], app: str, env: str, hosts: Sequence[Host]) -> None:
        cfg = app_config(snap)
        self.connector = connector(snap)
        seeding = any(isinstance(t, NginxTraffic) and t.seed for t in cfg.traffic)
        self.runtime = runtime(app, env, cfg, connect=self.connect, hosts=list(hosts) if seeding else None)
        self.artifacts = artifact_store(cfg)
        self.app = app

    @classmethod
    def for_release(cls, store: Store, rec: ReleaseRecord) -> LiveFleet:
        return cls(rec.config, rec.app, rec.env, [r.host_spec for r in store.host_runs(rec.id)])

    async def connect(self, host: Host) -> Transport:
        return await self.connector.connect(host)

    async def package(self, version: str) -> Package:
        return await self.artifacts.resolve(self.app, version)

    async def close(self) -> None:
        await self.connector.close()
        for switch in self.runtime.switches:
            await switch.close()
        for silencer in self.runtime.silencers:
            await silencer.close()


async def open_fleet(store: Store, rec: ReleaseRecord) -> LiveFleet:
    return LiveFleet.for_release(store, rec)


__all__ = ["LiveFleet", "inventory_for", "open_fleet", "render_template", "runtime", "secret", "snapshot"]
