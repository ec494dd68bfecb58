"""Config -> adapters: every traffic, monitoring and inventory `type` builds the right adapter with the right
arguments; secrets come from environment variables and never reach the release's snapshot."""

from __future__ import annotations

import json
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.cmdb import FakeCmdb

import graylift.service.releases as service_module
from graylift import wiring
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
from graylift.adapters.transport.local import LocalConnector, LocalTransport
from graylift.config import AppConfig, load_config
from graylift.core.model import Host
from graylift.errors import ConfigError
from graylift.preflight import Report
from graylift.service import Graylift
from graylift.store import Store

SECRETS = {"ETCD_PW": "etcd-s3cret", "NACOS_PW": "nacos-s3cret", "CONSUL_TOKEN": "consul-s3cret",
           "EUREKA_PW": "eureka-s3cret", "ZBX_TOKEN": "zabbix-s3cret", "ZBX_PW": "zabbix-pw-s3cret",
           "PLUS_AUTH": "Basic cGx1cy1zM2NyZXQ=", "NB_TOKEN": "netbox-s3cret", "CMDB_TOKEN": "cmdb-s3cret"}

EVERY_TYPE = """\
repositories:
  drop: {local_dir: ./packages}
apps:
  shop:
    package: {type: tar.gz, repository: drop}
    deploy: {dir: /srv/shop}
    commands: {start: "sh {current}/bin/start", stop: "sh {current}/bin/stop"}
    health: {tcp_port: 8080}
    traffic:
      - {type: haproxy, socket: /run/h.sock, backend: shop, server: "{address}", drain_timeout: 7}
      - {type: zookeeper, hosts: "127.0.0.1:2181", service: com.acme.Shop, port: 20880}
      - type: nginx
        include: /etc/nginx/upstreams/shop.conf
        upstream: shop
        port: 8080
        keepalive: 16
        server_params: max_fails=3
        nginx_conf: /etc/nginx/nginx.conf
        reload_settle: 0.2
      - {type: nginx, include: /etc/nginx/up/shop.conf, upstream: shop, port: 8080, lb_host: lb-2,
         lb_port: 2222, lb_user: deploy, seed: true, name: "nginx:lb-2"}
      - type: nginx_plus
        url: http://127.0.0.1:8088/api
        upstream: shop
        port: 8080
        api_version: 9
        headers: {X-Team: shop}
        headers_env: {Authorization: PLUS_AUTH}
      - type: command
        take_out: /opt/lb/ctl disable {address}:{port}
        put_back: /opt/lb/ctl enable {address}:{port}
        verify: /opt/lb/ctl state {address}:{port}
        in_flight: /opt/lb/ctl active {address}:{port}
        port: 8080
        run_on: host
        timeout: 12
      - {type: etcd, url: "http://127.0.0.1:2379", service: shop, port: 8080, mode: field,
         username: graylift, password_env: ETCD_PW, propagation_seconds: 1.5}
      - {type: dubbo3, hosts: "127.0.0.1:2181", application: shop, port: 20880, group: g1,
         propagation_seconds: 3}
      - {type: nacos, url: "http://127.0.0.1:8848", service: shop, port: 8080, namespace: ns1,
         username: nacos, password_env: NACOS_PW, ephemeral: false}
      - {type: consul, service: shop, port: 8080, service_id: "{service}-{port}", token_env: CONSUL_TOKEN}
      - {type: eureka, url: "http://127.0.0.1:8761/eureka", app: shop, port: 8080, username: eu,
         password_env: EUREKA_PW, propagation_seconds: 30}
    monitoring:
      - {type: alertmanager, url: "http://127.0.0.1:9093", silence_minutes: 45}
      - {type: zabbix, url: "http://127.0.0.1:8089", token_env: ZBX_TOKEN, host: "{address}", silence_minutes: 20}
      - {type: zabbix, url: "http://127.0.0.1:8089", username: Admin, password_env: ZBX_PW, legacy_auth: true}
      - type: command
        mute_command: /opt/mon/mute {host} --until {until} --why {reason}
        unmute_command: /opt/mon/unmute {host} --why {reason}
        check_command: /opt/mon/check {host} --why {reason}
        timeout: 9
        name: mon
    inventory:
      type: netbox
      url: https://netbox.example
      token_env: NB_TOKEN
      kinds: [devices, virtual-machines]
      filters: {tag: "{app}", site: [dc1, dc2]}
      group_from: "tag-prefix:group-"
      zone_from: rack
      page_size: 50
    envs:
      test:
        inventory: {type: http, url: "http://127.0.0.1:1/hosts?app={app}&env={env}", token_env: CMDB_TOKEN}
      dev:
        inventory: {type: builtin}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "graylift.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/state.db")
    yield opened
    opened.close()


async def test_every_type_builds_its_adapter_from_its_entry(tmp_path: Path, secrets: dict[str, str]) -> None:
    cfg = load_config(write(tmp_path, EVERY_TYPE)).app_for_env("shop", "prod")
    connector = LocalConnector()
    seed = [Host("web-01", "10.213.0.1"), Host("web-02", "10.213.0.2")]
    rt = wiring.runtime("shop", "prod", cfg, connect=connector.connect, hosts=seed)
    haproxy, zk, nginx, nginx_ssh, plus, command, etcd, dubbo3, nacos, consul, eureka = rt.switches
    try:
        assert [type(s) for s in rt.switches] == [
            HaproxySwitch, ZookeeperSwitch, NginxSwitch, NginxSwitch, NginxPlusSwitch, CommandSwitch,
            EtcdSwitch, Dubbo3Switch, NacosSwitch, ConsulSwitch, EurekaSwitch]
        # Each adapter holds the very entry it was built from (one model per backend, no copy).
        assert [s.cfg for s in rt.switches] == cfg.traffic  # type: ignore[attr-defined]
        assert isinstance(haproxy, HaproxySwitch) and haproxy.server(Host("web-01", "10.213.0.1")) == "10.213.0.1"
        assert isinstance(zk, ZookeeperSwitch) and zk.name == "zookeeper:/dubbo/com.acme.Shop"

        assert isinstance(nginx, NginxSwitch) and isinstance(nginx_ssh, NginxSwitch)
        assert nginx.hosts is None and nginx.name == "nginx:shop"
        local = await nginx.transport_factory()  # no lb_host: nginx on the controller itself
        assert isinstance(local, LocalTransport) and local.host == Host("controller", "127.0.0.1")
        assert (await local.run("echo ok", timeout=5)).stdout == "ok\n"
        remote = await nginx_ssh.transport_factory()  # lb_host: through the release's connector
        assert remote.host == Host("lb-2", "lb-2", port=2222, user="deploy")
        assert nginx_ssh.hosts == seed and nginx_ssh.name == "nginx:lb-2"

        assert isinstance(plus, NginxPlusSwitch)
        assert plus.base == "http://127.0.0.1:8088/api/9/http/upstreams/shop"
        assert plus._client.headers["Authorization"] == secrets["PLUS_AUTH"]
        assert plus._client.headers["X-Team"] == "shop"

        assert isinstance(command, CommandSwitch)
        assert (command.app, command.name, command.connect) == ("shop", "command:shop", connector.connect)

        assert isinstance(etcd, EtcdSwitch) and etcd.api.login is not None
        assert etcd.api.login.password == secrets["ETCD_PW"]
        assert etcd.name == "etcd:/services/shop/*:8080"
        assert isinstance(dubbo3, Dubbo3Switch) and dubbo3.rule_path == "/dubbo/config/g1/shop.configurators"
        assert isinstance(nacos, NacosSwitch) and nacos.api.login is not None
        assert nacos.api.login.password == secrets["NACOS_PW"]
        assert isinstance(consul, ConsulSwitch) and consul._token == secrets["CONSUL_TOKEN"]
        assert consul.service_id(Host("web-01", "10.213.0.1")) == "shop-8080"
        assert consul.agent_url(Host("web-01", "10.213.0.1")) == "http://10.213.0.1:8500"
        assert isinstance(eureka, EurekaSwitch) and eureka._auth is not None
        assert eureka.instance_id(Host("web-01", "10.213.0.1")) == "web-01:shop:8080"
        # Every switch tells the take-out step how long its consumers need (0 for load balancers).
        assert [s.propagation_seconds for s in rt.switches] == [0, 2, 0, 0, 0, 0, 1.5, 3, 0, 0, 30]

        am, zbx_token, zbx_login, mon = rt.silencers
        assert [s.cfg for s in rt.silencers] == cfg.monitoring  # type: ignore[attr-defined]
        assert isinstance(am, AlertmanagerSilencer) and am.url == "http://127.0.0.1:9093"
        assert isinstance(zbx_token, ZabbixSilencer) and isinstance(zbx_login, ZabbixSilencer)
        assert (zbx_token.url, zbx_token._token, zbx_token._password) == (
            "http://127.0.0.1:8089/api_jsonrpc.php", secrets["ZBX_TOKEN"], None)
        assert (zbx_login._token, zbx_login._password) == (None, secrets["ZBX_PW"])
        assert isinstance(mon, CommandSilencer) and mon.name == "command:mon"
        assert rt.silence_seconds == 20 * 60  # the shortest silence_minutes
    finally:
        for switch in rt.switches:
            await switch.close()
        await connector.close()


def test_inventory_per_type_and_env(tmp_path: Path, secrets: dict[str, str], store: Store) -> None:
    config = load_config(write(tmp_path, EVERY_TYPE))
    netbox = wiring.inventory_for(config.app_for_env("shop", "prod"), store)
    assert isinstance(netbox, NetboxInventory) and netbox.cfg == config.app_for_env("shop", "prod").inventory
    assert (netbox.cfg.kinds, netbox.cfg.group_from, netbox._token) == (
        ["devices", "virtual-machines"], "tag-prefix:group-", secrets["NB_TOKEN"])
    http = wiring.inventory_for(config.app_for_env("shop", "test"), store)  # override switches the type
    assert isinstance(http, HttpJsonInventory) and http._token == secrets["CMDB_TOKEN"]
    assert http.url_for("shop", "test") == "http://127.0.0.1:1/hosts?app=shop&env=test"
    builtin = wiring.inventory_for(config.app_for_env("shop", "dev"), store)
    assert isinstance(builtin, BuiltinInventory) and builtin.store is store


def test_inventory_defaults_to_builtin(tmp_path: Path, store: Store) -> None:
    text = EVERY_TYPE.split("    traffic:")[0]
    cfg = load_config(write(tmp_path, text)).app_for_env("shop", "prod")
    assert cfg.inventory.type == "builtin"
    assert isinstance(wiring.inventory_for(cfg, store), BuiltinInventory)


@pytest.mark.parametrize("env", ["prod", "test", "dev"])
def test_snapshot_round_trips_and_holds_no_secret(tmp_path: Path, secrets: dict[str, str], env: str) -> None:
    config = load_config(write(tmp_path, EVERY_TYPE))
    snap = wiring.snapshot(config, "shop", env)
    text = json.dumps(snap)
    assert not [name for name, value in secrets.items() if value in text]
    again = wiring.app_config(json.loads(text))
    merged = config.app_for_env("shop", env)
    assert again.traffic == merged.traffic and again.monitoring == merged.monitoring
    assert again.inventory == merged.inventory
    assert AppConfig.model_validate(again.model_dump(mode="json")) == again


@pytest.mark.parametrize(("variable", "field"), [
    ("ETCD_PW", "traffic[6].password_env"), ("NACOS_PW", "traffic[8].password_env"),
    ("CONSUL_TOKEN", "traffic[9].token_env"), ("EUREKA_PW", "traffic[10].password_env"),
    ("PLUS_AUTH", "traffic[4].headers_env.Authorization"), ("ZBX_TOKEN", "monitoring[1].token_env"),
    ("ZBX_PW", "monitoring[2].password_env"),
])
def test_missing_secret_names_field_and_variable(tmp_path: Path, secrets: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch, variable: str, field: str) -> None:
    cfg = load_config(write(tmp_path, EVERY_TYPE)).app_for_env("shop", "prod")
    monkeypatch.delenv(variable)
    with pytest.raises(ConfigError) as caught:
        wiring.runtime("shop", "prod", cfg, connect=LocalConnector().connect)
    assert caught.value.field == field
    assert variable in str(caught.value) and str(caught.value).startswith(f"{field}: ")
    assert not [value for value in secrets.values() if value in str(caught.value)]


@pytest.mark.parametrize(("env", "variable"), [("prod", "NB_TOKEN"), ("test", "CMDB_TOKEN")])
def test_missing_inventory_token(tmp_path: Path, secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                 store: Store, env: str, variable: str) -> None:
    cfg = load_config(write(tmp_path, EVERY_TYPE)).app_for_env("shop", env)
    monkeypatch.setenv(variable, "")
    with pytest.raises(ConfigError, match=rf"^inventory\.token_env: the environment variable {variable} is not set"):
        wiring.inventory_for(cfg, store)


def test_nginx_lb_host_needs_a_connector(tmp_path: Path, secrets: dict[str, str]) -> None:
    cfg = load_config(write(tmp_path, EVERY_TYPE)).app_for_env("shop", "prod")
    with pytest.raises(ConfigError, match=r"^traffic\[3\]\.lb_host: lb_host needs the release's SSH connector"):
        wiring.traffic_switches(cfg, "shop")


# ---------------------------------------------------------------------- the service reads the configured CMDB

HOSTS_JSON = {"hosts": [{"name": f"web-{i:02d}", "address": f"10.213.0.{i}", "group": "beta" if i == 1 else "web"}
                        for i in range(1, 5)]}


@pytest.fixture
def cmdb() -> Iterator[FakeCmdb]:
    """A real HTTP CMDB on loopback that records the requests it answers."""
    server = FakeCmdb(default=(200, HOSTS_JSON))
    server.start()
    yield server
    server.stop()


async def test_release_takes_hosts_from_the_configured_inventory(tmp_path: Path, cmdb: FakeCmdb,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMDB_TOKEN", "cmdb-s3cret")

    async def no_hosts_to_reach(fleet: Any, hosts: Any, *, version: str | None, with_health: bool = True,
                                clock: Any = None) -> Report:
        return Report(package=await fleet.package(version) if version else None)  # the hosts are not real here

    monkeypatch.setattr(service_module, "preflight", no_hosts_to_reach)
    packages = tmp_path / "packages"
    packages.mkdir()
    with tarfile.open(packages / "shop-1.0.tar.gz", "w:gz"):
        pass
    path = write(tmp_path, f"""\
        repositories:
          drop: {{local_dir: ./packages}}
        apps:
          shop:
            package: {{type: tar.gz, repository: drop}}
            deploy: {{dir: /srv/shop}}
            commands: {{start: "sh {{current}}/bin/start", stop: "sh {{current}}/bin/stop"}}
            health: {{none: true}}
            traffic:
              - {{type: nginx, include: {tmp_path}/up.conf, upstream: shop, port: 8080, seed: true}}
            inventory: {{type: http, url: "{cmdb.url}/hosts/{{app}}/{{env}}", token_env: CMDB_TOKEN}}
        """)
    service = Graylift(path, db_url=f"sqlite:///{tmp_path}/state.db")
    try:
        view = await service.plan("shop", "prod")
        assert [h.name for h in view.hosts] == ["web-01", "web-02", "web-03", "web-04"]
        rec = await service.start_release("shop", "prod", "1.0", started_by="test")
        assert cmdb.seen == [("/hosts/shop/prod", "Bearer cmdb-s3cret")] * 2
        assert "cmdb-s3cret" not in json.dumps(rec.config)
        runs = service.store.host_runs(rec.id)
        assert sorted((r.host, r.address) for r in runs) == [(h["name"], h["address"]) for h in HOSTS_JSON["hosts"]]
        fleet = await wiring.open_fleet(service.store, rec)  # the snapshot drives the release, not the CMDB
        try:
            (nginx,) = fleet.runtime.switches
            assert isinstance(nginx, NginxSwitch)
            assert nginx.hosts is not None and sorted(h.address for h in nginx.hosts) == [
                h["address"] for h in HOSTS_JSON["hosts"]]
        finally:
            await fleet.close()
        assert len(cmdb.requests) == 2
    finally:
        service.close()


async def test_fleets_share_one_ssh_connector_only_while_the_service_shares_connections(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`release --wait` starts and drives in one event loop under ``sharing_connections``: the preflight's fleet
    and the drive's share one connector (each host's SSH connection opened once); it is closed once, at the end,
    by the service, never by a fleet that shares it. Outside it, each fleet has and closes its own."""
    from graylift.adapters.transport.ssh import SshConnector
    from graylift.service import Graylift

    gl = Graylift(write(tmp_path, EVERY_TYPE.split("    traffic:")[0]), db_url=f"sqlite:///{tmp_path}/state.db")
    snap, hosts = wiring.snapshot(gl.config, "shop", "prod"), [Host("web-1", "10.0.0.1")]
    closed: list[SshConnector] = []

    async def close(self: SshConnector) -> None:
        closed.append(self)

    monkeypatch.setattr(SshConnector, "close", close)
    own = [gl._fleet(snap, "shop", "prod", hosts) for _ in range(2)]
    assert own[0].connector is not own[1].connector  # type: ignore[attr-defined]
    await own[0].close()
    assert closed == [own[0].connector]  # type: ignore[attr-defined]
    closed.clear()
    async with gl.sharing_connections():
        preflight, drive = (gl._fleet(snap, "shop", "prod", hosts) for _ in range(2))
        assert preflight.connector is drive.connector  # type: ignore[attr-defined]
        await preflight.close()
        await drive.close()
        assert closed == []
    assert closed == [drive.connector]  # type: ignore[attr-defined]
