"""ZabbixSilencer against the FAKE Zabbix API (tests/fakes/zabbix.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from graylift.adapters.monitoring.zabbix import ZabbixMonitoring, ZabbixSilencer
from graylift.core.model import Host
from graylift.errors import SilencerError
from graylift.lab import services
from tests.fakes.zabbix import FakeZabbix

H1 = Host(name="web1", address="10.213.4.1")


@pytest.fixture
def zabbix() -> Iterator[FakeZabbix]:
    fake = FakeZabbix(hosts={"web1": "10501"})
    fake.start()
    yield fake
    fake.stop()


async def test_zabbix_maintenance_is_idempotent_and_ends_at_until(zabbix: FakeZabbix) -> None:
    silencer = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, username="Admin", password_env="TEST_PASSWORD"),
                              password="zabbix")
    until = datetime.now(UTC) + timedelta(minutes=20)
    mid = await silencer.mute(H1, until=until, reason="release 2.4.1")
    assert await silencer.mute(H1, until=until + timedelta(minutes=5), reason="release 2.4.1") == mid
    m = zabbix.maintenances[mid]
    assert m["name"] == "graylift release 2.4.1 web1" and m["hosts"] == [{"hostid": "10501"}]
    assert int(m["active_till"]) == int(until.timestamp())
    assert abs(int(m["active_since"]) - time.time()) < 5
    assert await silencer.is_muted(H1, reason="release 2.4.1")
    assert not await silencer.is_muted(H1, reason="other")
    await silencer.unmute(H1, reason="release 2.4.1")
    await silencer.unmute(H1, reason="release 2.4.1")
    assert zabbix.maintenances == {} and not await silencer.is_muted(H1, reason="release 2.4.1")


async def test_zabbix_unmute_given_its_mutes_id_deletes_it_in_one_call(zabbix: FakeZabbix) -> None:
    """The walk hands the unmute the id its mute answered (the host's one maintenance for the reason: a mute
    reuses it): one ``maintenance.delete``, no ``maintenance.get`` first. An id Zabbix no longer knows (deleted
    by hand) falls back to the lookup by name, which still ends a maintenance of the host and reason."""
    zabbix.api_tokens.add("tok")
    silencer = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, token_env="ZBX_TOKEN"), token="tok")
    until = datetime.now(UTC) + timedelta(minutes=10)
    mid = await silencer.mute(H1, until=until, reason="r")
    before = len(zabbix.requests)
    await silencer.unmute(H1, reason="r", silence_id=mid)
    assert [r.json()["method"] for r in zabbix.requests[before:]] == ["maintenance.delete"]
    assert zabbix.maintenances == {}

    gone = await silencer.mute(H1, until=until, reason="r")
    del zabbix.maintenances[gone]
    again = await silencer.mute(H1, until=until, reason="r")
    before = len(zabbix.requests)
    await silencer.unmute(H1, reason="r", silence_id=gone)
    assert [r.json()["method"] for r in zabbix.requests[before:]] == [
        "maintenance.delete", "maintenance.get", "maintenance.delete"]
    assert again not in zabbix.maintenances and zabbix.maintenances == {}


async def test_zabbix_expired_maintenance_is_replaced(zabbix: FakeZabbix) -> None:
    zabbix.api_tokens.add("tok")
    silencer = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url + "/", token_env="ZBX_TOKEN"), token="tok")
    old = await silencer.mute(H1, until=datetime.now(UTC) + timedelta(minutes=10), reason="r")
    zabbix.maintenances[old]["active_till"] = str(int(time.time()) - 1)
    assert not await silencer.is_muted(H1, reason="r")
    new = await silencer.mute(H1, until=datetime.now(UTC) + timedelta(minutes=10), reason="r")
    assert new != old and list(zabbix.maintenances) == [new]


async def test_zabbix_errors(zabbix: FakeZabbix) -> None:
    with pytest.raises(SilencerError, match=r"user.login failed: .*Incorrect user name.*username and password"):
        await ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, username="Admin", password_env="TEST_PASSWORD"),
                             password="bad").is_muted(H1, reason="r")
    with pytest.raises(SilencerError, match=r"Not authorized.*token"):
        await ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, token_env="ZBX_TOKEN"), token="bad-token").is_muted(H1,
                                                                                                                  reason="r")
    silencer = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, username="Admin", password_env="TEST_PASSWORD"),
                              password="zabbix")
    with pytest.raises(SilencerError, match=r"no host named 'ghost'.*host_template"):
        await silencer.mute(Host(name="ghost", address="x"), until=datetime.now(UTC) + timedelta(hours=1),
                            reason="r")
    with pytest.raises(SilencerError, match=r"not in the future"):
        await silencer.mute(H1, until=datetime.now(UTC) - timedelta(seconds=1), reason="r")
    down = ZabbixSilencer(ZabbixMonitoring(url=f"http://127.0.0.1:{services.free_port()}", timeout=2,
                                           token_env="ZBX_TOKEN"), token="t")
    with pytest.raises(SilencerError, match=r"Zabbix frontend reachable"):
        await down.is_muted(H1, reason="r")


async def test_zabbix_preflight_one_host_get_and_logout_at_close(zabbix: FakeZabbix) -> None:
    silencer = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, username="Admin", password_env="TEST_PASSWORD"),
                              password="zabbix")
    await silencer.mute(H1, until=datetime.now(UTC) + timedelta(minutes=10), reason="r")
    before, seen = dict(zabbix.maintenances), len(zabbix.requests)
    ghost = Host(name="ghost", address="10.213.4.9")
    report = await silencer.preflight([H1, ghost])
    assert report.problems == (f"zabbix:{zabbix.url}/api_jsonrpc.php: ghost: Zabbix has no host named 'ghost'; add "
                               "it to Zabbix or fix host_template (it must give the technical host name)",)
    assert report.notes == (f"zabbix:{zabbix.url}/api_jsonrpc.php: Zabbix 7.0.0, 1 of 2 hosts known",)
    methods = [r.json()["method"] for r in zabbix.requests[seen:]]
    assert methods == ["apiinfo.version", "host.get"]
    assert zabbix.maintenances == before
    assert len(zabbix.sessions) == 1
    await silencer.close()
    assert zabbix.sessions == set()  # the session user.login opened is closed
    await silencer.close()
    zabbix.api_tokens.add("tok")
    with_token = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, token_env="ZBX_TOKEN"), token="tok")
    assert (await with_token.preflight([H1])).problems == ()
    await with_token.close()
    assert zabbix.api_tokens == {"tok"}  # an API token is never logged out
    bad = ZabbixSilencer(ZabbixMonitoring(url=zabbix.url, username="Admin", password_env="TEST_PASSWORD"),
                         password="Wrong-Pw-9")
    (problem,) = (await bad.preflight([H1])).problems
    assert problem.startswith(f"zabbix:{zabbix.url}/api_jsonrpc.php: every host: user.login failed: ")
    assert "Wrong-Pw-9" not in problem
    down = ZabbixSilencer(ZabbixMonitoring(url=f"http://127.0.0.1:{services.free_port()}", timeout=2,
                                           token_env="ZBX_TOKEN"), token="t")
    (problem,) = (await down.preflight([H1])).problems
    assert "every host: POST /api_jsonrpc.php failed: ConnectError" in problem
