"""ZabbixSilencer against the FAKE Zabbix API (tests/fakes/zabbix.py); CommandSilencer with real commands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylift.adapters.command_silencer import CommandSilencer
from graylift.adapters.zabbix import ZabbixSilencer
from graylift.core.model import Host
from graylift.errors import SilencerError
from graylift.lab import services
from graylift.ports import Preflight
from tests.fakes.zabbix import FakeZabbix

H1 = Host(name="web1", address="10.213.4.1")


@pytest.fixture
def zabbix() -> Iterator[FakeZabbix]:
    fake = FakeZabbix(hosts={"web1": "10501"})
    fake.start()
    yield fake
    fake.stop()


async def test_zabbix_maintenance_is_idempotent_and_ends_at_until(zabbix: FakeZabbix) -> None:
    silencer = ZabbixSilencer(url=zabbix.url, username="Admin", password="zabbix")
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


async def test_zabbix_expired_maintenance_is_replaced(zabbix: FakeZabbix) -> None:
    zabbix.api_tokens.add("tok")
    silencer = ZabbixSilencer(url=zabbix.url + "/", token="tok")
    old = await silencer.mute(H1, until=datetime.now(UTC) + timedelta(minutes=10), reason="r")
    zabbix.maintenances[old]["active_till"] = str(int(time.time()) - 1)
    assert not await silencer.is_muted(H1, reason="r")
    new = await silencer.mute(H1, until=datetime.now(UTC) + timedelta(minutes=10), reason="r")
    assert new != old and list(zabbix.maintenances) == [new]


async def test_zabbix_errors(zabbix: FakeZabbix) -> None:
    with pytest.raises(SilencerError, match=r"user.login failed: .*Incorrect user name.*username and password"):
        await ZabbixSilencer(url=zabbix.url, username="Admin", password="bad").is_muted(H1, reason="r")
    with pytest.raises(SilencerError, match=r"Not authorized.*token"):
        await ZabbixSilencer(url=zabbix.url, token="bad-token").is_muted(H1, reason="r")
    silencer = ZabbixSilencer(url=zabbix.url, username="Admin", password="zabbix")
    with pytest.raises(SilencerError, match=r"no host named 'ghost'.*host_template"):
        await silencer.mute(Host(name="ghost", address="x"), until=datetime.now(UTC) + timedelta(hours=1),
                            reason="r")
    with pytest.raises(SilencerError, match=r"not in the future"):
        await silencer.mute(H1, until=datetime.now(UTC) - timedelta(seconds=1), reason="r")
    down = ZabbixSilencer(url=f"http://127.0.0.1:{services.free_port()}", token="t", timeout=2)
    with pytest.raises(SilencerError, match=r"Zabbix frontend reachable"):
        await down.is_muted(H1, reason="r")


def _commands(state: Path) -> CommandSilencer:
    f = f"{state}/{{host}}-{{reason}}"
    return CommandSilencer(
        mute_command=f"echo {{until}} > {state}/\"$(printf %s {{host}})\"; echo sil-{{host}}",
        unmute_command=f"rm -f {state}/\"$(printf %s {{host}})\"",
        check_command=f"test -e {state}/\"$(printf %s {{host}})\"" + f" # {f}")


async def test_command_silencer_round_trip_and_quoting(tmp_path: Path) -> None:
    silencer = _commands(tmp_path)
    host = Host(name="web1; touch pwned", address="10.0.0.1")
    until = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert await silencer.mute(host, until=until, reason="it's a test") == "sil-web1; touch pwned"
    assert (tmp_path / "web1; touch pwned").read_text() == "2099-01-02T03:04:05Z\n"
    assert not (Path.cwd() / "pwned").exists()
    assert await silencer.is_muted(host, reason="it's a test")
    await silencer.unmute(host, reason="it's a test")
    assert not await silencer.is_muted(host, reason="it's a test")


async def test_command_silencer_contract_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must pass the end time"):
        CommandSilencer(mute_command="true {host}", unmute_command="true", check_command="true")
    with pytest.raises(ValueError, match=r"unknown placeholder"):
        CommandSilencer(mute_command="x {until} {token}", unmute_command="true", check_command="true")
    failing = CommandSilencer(mute_command="echo boom {until}; exit 3", unmute_command="true",
                              check_command="exit 2", timeout=5)
    with pytest.raises(SilencerError, match=r"mute_command for web1 exited 3:\n    boom"):
        await failing.mute(H1, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    with pytest.raises(SilencerError, match=r"check_command for web1 exited 2"):
        await failing.is_muted(H1, reason="r")
    slow = CommandSilencer(mute_command="sleep 30 # {until}", unmute_command="true", check_command="true",
                           timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SilencerError, match=r"timed out after 0.5s"):
        await slow.mute(H1, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    assert time.monotonic() - started < 3


async def test_zabbix_preflight_one_host_get_and_logout_at_close(zabbix: FakeZabbix) -> None:
    silencer = ZabbixSilencer(url=zabbix.url, username="Admin", password="zabbix")
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
    with_token = ZabbixSilencer(url=zabbix.url, token="tok")
    assert (await with_token.preflight([H1])).problems == ()
    await with_token.close()
    assert zabbix.api_tokens == {"tok"}  # an API token is never logged out
    bad = ZabbixSilencer(url=zabbix.url, username="Admin", password="Wrong-Pw-9")
    (problem,) = (await bad.preflight([H1])).problems
    assert problem.startswith(f"zabbix:{zabbix.url}/api_jsonrpc.php: every host: user.login failed: ")
    assert "Wrong-Pw-9" not in problem
    down = ZabbixSilencer(url=f"http://127.0.0.1:{services.free_port()}", token="t", timeout=2)
    (problem,) = (await down.preflight([H1])).problems
    assert "every host: POST /api_jsonrpc.php failed: ConnectError" in problem


async def test_command_silencer_preflight_runs_check_for_every_host(tmp_path: Path) -> None:
    silencer = _commands(tmp_path)
    muted = Host(name="web2", address="10.213.4.2")
    await silencer.mute(muted, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    before = sorted(p.name for p in tmp_path.iterdir())
    report = await silencer.preflight([H1, muted])
    assert report == Preflight(notes=("command:command: check_command answered for 2 of 2 hosts",))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    broken = CommandSilencer(mute_command="true {until}", unmute_command="true",
                             check_command='echo "no such host {host}"; exit 3', name="mon")
    assert (await broken.preflight([H1])).problems == (
        "command:mon: web1: check_command exited 3 (no such host web1); it must exit 0 (muted) or 1 (not muted): "
        "fix it or the monitoring system",)
    slow = CommandSilencer(mute_command="true {until}", unmute_command="true", check_command="sleep 5",
                           timeout=0.3, name="slow")
    assert (await slow.preflight([H1])).problems == (
        "command:slow: command for web1 timed out after 0.3s: sleep 5; fix the check_command or the monitoring "
        "system",)
    await silencer.close()
