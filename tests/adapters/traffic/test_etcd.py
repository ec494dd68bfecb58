"""EtcdSwitch against a REAL etcd (Debian etcd-server 3.4) through its v3 HTTP/JSON gateway."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graylift.adapters.traffic.etcd import EtcdSwitch, EtcdTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services
from graylift.ports import Preflight

PORT = 8080


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, trust_env=False, timeout=10)

    def grant(self, ttl: int) -> str:
        return str(self.http.post("/v3/lease/grant", json={"TTL": ttl}).json()["ID"])

    def put(self, key: str, value: str, lease: str | None = None) -> None:
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        self.http.post("/v3/kv/put", json=body).raise_for_status()

    def get(self, key: str) -> dict[str, str] | None:
        kvs = self.http.post("/v3/kv/range", json={"key": _b64(key)}).json().get("kvs") or []
        return kvs[0] if kvs else None

    def value(self, key: str) -> str | None:
        kv = self.get(key)
        return None if kv is None else base64.b64decode(kv.get("value", "")).decode()

    def delete(self, key: str) -> None:
        self.http.post("/v3/kv/deleterange", json={"key": _b64(key)}).raise_for_status()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    workdir: Path = tmp_path_factory.mktemp("etcd")
    service = services.start_etcd(workdir, services.free_port())
    client = Etcd(f"http://127.0.0.1:{service.port}")
    yield client
    client.http.close()
    services.stop_service(service)


def _host(n: int) -> Host:
    return Host(name=f"web{n}", address=f"10.213.0.{n}")


async def test_remove_mode_parks_value_and_lease_then_restores(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="orders", port=PORT, propagation_seconds=0.3))
    host = _host(1)
    key = "/services/orders/10.213.0.1:8080"
    lease = etcd.grant(120)
    etcd.put(key, '{"addr":"10.213.0.1:8080"}', lease)
    assert await switch.is_in(host) and not await switch.is_out(host)

    await switch.take_out(host)
    assert switch.propagation_seconds == 0.3  # the take-out step waits it, not the switch
    assert etcd.get(key) is None
    assert await switch.is_out(host) and not await switch.is_in(host)
    record = json.loads(etcd.value("/graylift/parked/services/orders/10.213.0.1:8080") or "{}")
    assert base64.b64decode(record["value"]).decode() == '{"addr":"10.213.0.1:8080"}'
    assert record["lease"] == lease and record["ttl"] == 120
    await switch.take_out(host)  # idempotent

    # a new process (graylift restarted after a crash) puts it back from what etcd kept
    fresh = EtcdSwitch(EtcdTraffic(url=etcd.url, service="orders", port=PORT))
    await fresh.put_back(host)
    kv = etcd.get(key)
    assert kv is not None and kv["lease"] == lease
    assert etcd.value(key) == '{"addr":"10.213.0.1:8080"}'
    assert etcd.get("/graylift/parked/services/orders/10.213.0.1:8080") is None
    assert await fresh.is_in(host)
    await fresh.put_back(host)  # idempotent


async def test_put_back_keeps_a_fresh_registration(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="orders", port=PORT))
    host, key = _host(2), "/services/orders/10.213.0.2:8080"
    etcd.put(key, "old", etcd.grant(60))
    await switch.take_out(host)
    new_lease = etcd.grant(60)
    etcd.put(key, "new", new_lease)  # the restarted app registered itself
    assert not await switch.is_out(host)
    await switch.put_back(host)
    kv = etcd.get(key)
    assert kv is not None and kv["lease"] == new_lease and etcd.value(key) == "new"
    assert await switch.parked(host) is None


async def test_expired_lease_is_not_resurrected(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="orders", port=PORT))
    host, key = _host(3), "/services/orders/10.213.0.3:8080"
    lease = etcd.grant(60)
    etcd.put(key, "v", lease)
    await switch.take_out(host)
    etcd.http.post("/v3/lease/revoke", json={"ID": lease}).raise_for_status()
    with pytest.raises(TrafficError, match=r"lease .* expired .*saved value stays at /graylift/parked/"):
        await switch.put_back(host)
    assert await switch.parked(host) is not None and etcd.get(key) is None


async def test_key_without_lease_round_trips(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="static", port=PORT, key_template="/reg/{service}/{host}"))
    host = _host(4)
    etcd.put("/reg/static/web4", "plain")
    await switch.take_out(host)
    assert etcd.get("/reg/static/web4") is None
    await switch.put_back(host)
    kv = etcd.get("/reg/static/web4")
    assert kv is not None and "lease" not in kv and etcd.value("/reg/static/web4") == "plain"


async def test_field_mode_flips_status_and_keeps_lease(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="pay", port=PORT, mode="field", status_field="status",
                                    out_value="down", in_value="up"))
    host, key = _host(5), "/services/pay/10.213.0.5:8080"
    lease = etcd.grant(120)
    etcd.put(key, json.dumps({"addr": "10.213.0.5", "status": "up"}), lease)
    assert await switch.is_in(host)
    await switch.take_out(host)
    await switch.take_out(host)
    kv = etcd.get(key)
    assert kv is not None and kv["lease"] == lease
    assert json.loads(etcd.value(key) or "{}") == {"addr": "10.213.0.5", "status": "down"}
    assert await switch.is_out(host) and not await switch.is_in(host)
    await switch.put_back(host)
    assert json.loads(etcd.value(key) or "{}")["status"] == "up" and await switch.is_in(host)

    etcd.put("/services/pay/10.213.0.6:8080", "not json")
    with pytest.raises(TrafficError, match=r"not a JSON object.*mode 'remove'"):
        await switch.take_out(_host(6))


async def test_errors_name_key_and_server(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="orders", port=PORT))
    with pytest.raises(TrafficError, match=r"no key /services/orders/10.213.0.9:8080 .*key_template"):
        await switch.take_out(_host(9))
    with pytest.raises(TrafficError, match=r"nothing to put back"):
        await switch.put_back(_host(9))
    down = EtcdSwitch(EtcdTraffic(url=f"http://127.0.0.1:{services.free_port()}", service="orders", port=PORT,
                                  timeout=2))
    with pytest.raises(TrafficError, match=r"etcd:.*is etcd running at http://127.0.0.1:\d+"):
        await down.is_out(_host(1))


async def test_preflight_reads_every_key_in_one_txn_and_writes_nothing(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="pf", port=PORT))
    hosts = [Host(name=f"pf{n}", address=f"10.213.6.{n}") for n in range(1, 4)]
    for host in hosts[:2]:
        etcd.put(f"/services/pf/{host.address}:8080", "v")
    await switch.take_out(hosts[1])
    revision = etcd.http.post("/v3/kv/range", json={"key": _b64("/")}).json()["header"]["revision"]
    report = await switch.preflight(hosts)
    assert report.problems == ("etcd:/services/pf/*:8080: pf3: no key /services/pf/10.213.6.3:8080 in etcd at "
                               f"{etcd.url} (and nothing parked at /graylift/parked/services/pf/10.213.6.3:8080); "
                               "is the host registered, and does key_template match?",)
    assert report.notes == ("etcd:/services/pf/*:8080: 1 of 3 hosts registered and in (mode remove)",
                            "etcd:/services/pf/*:8080: already out: pf2")
    assert etcd.http.post("/v3/kv/range", json={"key": _b64("/")}).json()["header"]["revision"] == revision
    many = [Host(name=f"m{n}", address=f"10.213.7.{n}") for n in range(150)]  # more reads than one txn holds
    for host in many:
        etcd.put(f"/services/pf/{host.address}:8080", "v")
    assert await switch.preflight(many) == Preflight(
        notes=("etcd:/services/pf/*:8080: 150 of 150 hosts registered and in (mode remove)",))
    await switch.put_back(hosts[1])


async def test_preflight_field_mode_checks_the_value(etcd: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd.url, service="pff", port=PORT, mode="field"))
    good, out, bad = (Host(name=f"f{n}", address=f"10.213.8.{n}") for n in range(1, 4))
    etcd.put("/services/pff/10.213.8.1:8080", json.dumps({"status": "up"}))
    etcd.put("/services/pff/10.213.8.2:8080", json.dumps({"status": "down"}))
    etcd.put("/services/pff/10.213.8.3:8080", "plain text")
    report = await switch.preflight([good, out, bad])
    assert report.problems == ("etcd:/services/pff/*:8080: f3: value of /services/pff/10.213.8.3:8080 is not a "
                               "JSON object, so mode 'field' cannot set 'status'; use mode 'remove'",)
    assert report.notes[1] == "etcd:/services/pff/*:8080: already out: f2"
    down = EtcdSwitch(EtcdTraffic(url=f"http://127.0.0.1:{services.free_port()}", service="pff", port=PORT, timeout=2))
    (problem,) = (await down.preflight([good])).problems
    assert problem.startswith("etcd:/services/pff/*:8080: every host: POST /v3/kv/txn failed: ConnectError")


class FreshRootToken(httpx.Auth):
    """The test's own requests log in as root every time (its tokens expire as fast as graylift's)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        answer = httpx.post(f"{self.url}/v3/auth/authenticate", json={"name": "root", "password": ROOT_PASSWORD},
                            timeout=10, trust_env=False)
        request.headers["Authorization"] = answer.json()["token"]
        yield request


TOKEN_TTL = 2  # seconds a simple token lives without use (etcd --auth-token-ttl)
ROOT_PASSWORD, APP_PASSWORD = "root-Pw-4711", "app-Pw-0815"


@pytest.fixture(scope="module")
def etcd_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """A second real etcd with auth on and short-lived simple tokens; user ``app`` may read/write every key."""
    workdir: Path = tmp_path_factory.mktemp("etcd-auth")
    port, peer = services.free_port(), services.free_port()
    argv = ["etcd", "--name", "auth", f"--data-dir={workdir / 'data'}",
            f"--listen-client-urls=http://127.0.0.1:{port}", f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=auth=http://127.0.0.1:{peer}", "--auth-token=simple",
            f"--auth-token-ttl={TOKEN_TTL}", "--log-level=warn"]
    service = services._ready_or_stop(services._spawn("etcd", argv, workdir, port),
                                      check=lambda: services._http_ok(f"http://127.0.0.1:{port}/health"))
    client = Etcd(f"http://127.0.0.1:{port}")
    try:
        for call, body in [("user/add", {"name": "root", "password": ROOT_PASSWORD}),
                           ("role/add", {"name": "root"}), ("user/grant", {"user": "root", "role": "root"}),
                           ("user/add", {"name": "app", "password": APP_PASSWORD}), ("role/add", {"name": "app"}),
                           ("role/grant", {"name": "app", "perm": {"permType": "READWRITE", "key": _b64("/"),
                                                                   "range_end": _b64("\0")}}),
                           ("user/grant", {"user": "app", "role": "app"}), ("enable", {})]:
            client.http.post(f"/v3/auth/{call}", json=body).raise_for_status()
        client.http.auth = FreshRootToken(client.url)
        yield client
    finally:
        client.http.close()
        services.stop_service(service)


async def test_expired_token_is_renewed_once(etcd_auth: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd_auth.url, service="auth", port=PORT, username="app",
                                    password_env="TEST_PASSWORD"), password=APP_PASSWORD)
    host = _host(1)
    etcd_auth.put("/services/auth/10.213.0.1:8080", "v")
    assert await switch.is_in(host)
    first = switch.api.login.current
    time.sleep(TOKEN_TTL + 1.5)  # a long canary bake: the token expires on the server
    stale = httpx.post(f"{etcd_auth.url}/v3/kv/range", trust_env=False, json={"key": _b64("/x")},
                       headers={"Authorization": first or ""}, timeout=5)
    assert stale.status_code == 401 and "invalid auth token" in stale.text  # really expired
    await switch.take_out(host)
    assert switch.api.login.current not in (None, first)
    assert etcd_auth.get("/services/auth/10.213.0.1:8080") is None
    time.sleep(TOKEN_TTL + 1.5)
    await asyncio.gather(switch.put_back(host), switch.is_out(_host(2)), switch.parked(_host(3)))
    assert etcd_auth.value("/services/auth/10.213.0.1:8080") == "v"
    assert (await switch.preflight([host])).problems == ()


async def test_wrong_password_is_one_line_without_the_password(etcd_auth: Etcd) -> None:
    switch = EtcdSwitch(EtcdTraffic(url=etcd_auth.url, service="auth", port=PORT, username="app",
                                    password_env="TEST_PASSWORD"), password="Wrong-Pw-123")
    with pytest.raises(TrafficError) as err:
        await switch.is_in(_host(1))
    assert "authentication failed" in str(err.value) and "are the user 'app' and its password right?" in str(err.value)
    assert "Wrong-Pw-123" not in str(err.value) and "\n" not in str(err.value)
    report = await switch.preflight([_host(1)])
    assert report.problems[0].startswith("etcd:/services/auth/*:8080: every host: POST /v3/auth/authenticate")
    assert "Wrong-Pw-123" not in report.problems[0]
