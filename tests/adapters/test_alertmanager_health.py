"""Alertmanager silences against a real Alertmanager; health probes through a local transport."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from graylift.adapters.alertmanager import AlertmanagerSilencer
from graylift.adapters.health import CommandProbe, HttpProbe, ProcessProbe, TcpProbe, check_all
from graylift.adapters.local import LocalTransport
from graylift.core.model import Host
from graylift.errors import SilencerError
from graylift.lab import services

from .conftest import App

HOST = Host(name="web-7", address="10.213.0.7")


def _silence(url: str, silence_id: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/api/v2/silence/{silence_id}", timeout=5).json())


async def test_alertmanager_mute_unmute(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(url=url)
    assert silencer.name == f"alertmanager:{url}"
    until = datetime.now(UTC) + timedelta(minutes=30)
    first = await silencer.mute(HOST, until=until, reason="release r-1")
    assert await silencer.mute(HOST, until=until, reason="release r-1") == first
    assert await silencer.is_muted(HOST, reason="release r-1")
    assert not await silencer.is_muted(HOST, reason="release r-2")
    silence = _silence(url, first)
    assert silence["createdBy"] == "graylift" and silence["comment"] == "release r-1"
    assert silence["matchers"] == [{"name": "instance", "value": "web-7", "isRegex": False, "isEqual": True}]
    ends = datetime.fromisoformat(str(silence["endsAt"]).replace("Z", "+00:00"))
    assert abs((ends - until).total_seconds()) < 1
    await silencer.unmute(HOST, reason="release r-1")
    await silencer.unmute(HOST, reason="release r-1")  # idempotent
    assert not await silencer.is_muted(HOST, reason="release r-1")
    assert _silence(url, first)["status"] == {"state": "expired"}


async def test_alertmanager_silence_lapses_by_itself(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(url=url, label="addr", value_template="{address}")
    silence_id = await silencer.mute(HOST, until=datetime.now(UTC) + timedelta(seconds=1), reason="short")
    assert _silence(url, silence_id)["matchers"] == [
        {"name": "addr", "value": "10.213.0.7", "isRegex": False, "isEqual": True}]
    await asyncio.sleep(1.3)
    assert not await silencer.is_muted(HOST, reason="short")


async def test_alertmanager_errors_name_url() -> None:
    url = f"http://127.0.0.1:{services.free_port()}"
    with pytest.raises(SilencerError, match=url):
        await AlertmanagerSilencer(url=url, timeout=2).is_muted(HOST, reason="x")


async def test_alertmanager_refusal_has_status(alertmanager: services.Service) -> None:
    silencer = AlertmanagerSilencer(url=f"http://127.0.0.1:{alertmanager.port}", label="")
    with pytest.raises(SilencerError, match="HTTP 400"):
        await silencer.mute(HOST, until=datetime.now(UTC) + timedelta(minutes=1), reason="bad")


async def test_health_probes_see_real_app(apps: list[App]) -> None:
    transport = LocalTransport(Host(name="controller", address="127.0.0.1"))
    port = apps[0].port
    closed = services.free_port()

    ok = await HttpProbe(f"http://127.0.0.1:{port}/health", body="ok").check(transport)
    assert ok.ok, ok.detail
    wrong_body = await HttpProbe(f"http://127.0.0.1:{port}/", body="ok").check(transport)
    assert not wrong_body.ok and "app1" in wrong_body.detail
    wrong_status = await HttpProbe(f"http://127.0.0.1:{port}/health", status=204).check(transport)
    assert not wrong_status.ok and "returned 200, expected 204" in wrong_status.detail
    refused = await HttpProbe(f"http://127.0.0.1:{closed}/health").check(transport)
    assert not refused.ok and "failed" in refused.detail

    assert (await TcpProbe(port).check(transport)).ok
    tcp_closed = await TcpProbe(closed).check(transport)
    assert not tcp_closed.ok and str(closed) in tcp_closed.detail

    running = await ProcessProbe(f"graylift_test_app.py {port} app1").check(transport)
    assert running.ok, running.detail
    # the probe's own shell carries the pattern in its command line: it must not match itself
    absent = await ProcessProbe("graylift-no-such-process-4711").check(transport)
    assert not absent.ok and "no process matches" in absent.detail

    assert (await CommandProbe("true").check(transport)).ok
    failing = await CommandProbe("echo sick; exit 3").check(transport)
    assert not failing.ok and "exited 3" in failing.detail and "sick" in failing.detail
    slow = await CommandProbe("sleep 5", timeout=0.3).check(transport)
    assert not slow.ok and "timed out" in slow.detail

    both = await check_all([TcpProbe(port), HttpProbe(f"http://127.0.0.1:{port}/health")], transport)
    assert both.ok
    one_bad = await check_all([TcpProbe(port), TcpProbe(closed)], transport)
    assert not one_bad.ok and f"tcp:127.0.0.1:{closed}" in one_bad.detail
    assert (await check_all([], transport)).ok


async def test_alertmanager_preflight_reads_status_only(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(url=url)
    before = httpx.get(f"{url}/api/v2/silences", timeout=5).json()
    report = await silencer.preflight([HOST, Host(name="web-8", address="10.213.0.8")])
    assert report.problems == ()
    (note,) = report.notes
    assert note.startswith(f"alertmanager:{url}: Alertmanager 0.") and note.endswith(
        "will silence instance=<{host}> for 2 hosts")
    assert httpx.get(f"{url}/api/v2/silences", timeout=5).json() == before
    await silencer.close()
    down = AlertmanagerSilencer(url=f"http://127.0.0.1:{services.free_port()}", timeout=2)
    (problem,) = (await down.preflight([HOST])).problems
    assert problem.startswith(f"{down.name}: every host: GET /api/v2/status failed: ConnectError")
    assert problem.endswith("is Alertmanager running at that URL?")
