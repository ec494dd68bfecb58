"""Alertmanager silences against a real Alertmanager."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from graylift.adapters.monitoring.alertmanager import AlertmanagerMonitoring, AlertmanagerSilencer
from graylift.core.model import Host
from graylift.errors import SilencerError
from graylift.lab import services
from tests.fakes.base import FakeServer, Request, Response

HOST = Host(name="web-7", address="10.213.0.7")


def _silence(url: str, silence_id: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/api/v2/silence/{silence_id}", timeout=5).json())


async def test_alertmanager_mute_unmute(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(AlertmanagerMonitoring(url=url))
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
    await silencer.close()


async def test_alertmanager_silence_lapses_by_itself(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(AlertmanagerMonitoring(url=url, label="addr", value="{address}"))
    silence_id = await silencer.mute(HOST, until=datetime.now(UTC) + timedelta(seconds=1), reason="short")
    assert _silence(url, silence_id)["matchers"] == [
        {"name": "addr", "value": "10.213.0.7", "isRegex": False, "isEqual": True}]
    await asyncio.sleep(1.3)
    assert not await silencer.is_muted(HOST, reason="short")
    await silencer.close()


async def test_alertmanager_errors_name_url() -> None:
    url = f"http://127.0.0.1:{services.free_port()}"
    with pytest.raises(SilencerError, match=url):
        await AlertmanagerSilencer(AlertmanagerMonitoring(url=url), timeout=2).is_muted(HOST, reason="x")


async def test_alertmanager_refusal_has_status(alertmanager: services.Service) -> None:
    # a label the config would refuse, so that Alertmanager refuses the silence
    entry = AlertmanagerMonitoring.model_construct(url=f"http://127.0.0.1:{alertmanager.port}", label="")
    silencer = AlertmanagerSilencer(entry)
    with pytest.raises(SilencerError, match="HTTP 400"):
        await silencer.mute(HOST, until=datetime.now(UTC) + timedelta(minutes=1), reason="bad")
    await silencer.close()


async def test_alertmanager_preflight_reads_status_only(alertmanager: services.Service) -> None:
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(AlertmanagerMonitoring(url=url))
    before = httpx.get(f"{url}/api/v2/silences", timeout=5).json()
    report = await silencer.preflight([HOST, Host(name="web-8", address="10.213.0.8")])
    assert report.problems == ()
    (note,) = report.notes
    assert note.startswith(f"alertmanager:{url}: Alertmanager 0.") and note.endswith(
        "will silence instance=<{host}> for 2 hosts")
    assert httpx.get(f"{url}/api/v2/silences", timeout=5).json() == before
    await silencer.close()
    down = AlertmanagerSilencer(AlertmanagerMonitoring(url=f"http://127.0.0.1:{services.free_port()}"), timeout=2)
    (problem,) = (await down.preflight([HOST])).problems
    assert problem.startswith(f"{down.name}: every host: GET /api/v2/status failed: ConnectError")
    assert problem.endswith("is Alertmanager running at that URL?")


class CountingAlertmanager(FakeServer):
    """Just enough of the silences API to mute and unmute; ``requests`` keeps each one's client port."""

    def handle(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(body=[])
        return Response(body={"silenceID": "s-1"})


async def test_one_silencer_keeps_one_connection_for_all_its_calls() -> None:
    fake = CountingAlertmanager()
    silencer = AlertmanagerSilencer(AlertmanagerMonitoring(url=fake.start()))
    try:
        until = datetime.now(UTC) + timedelta(minutes=30)
        for n in range(3):
            await silencer.mute(Host(name=f"web-{n}", address=f"10.0.0.{n}"), until=until, reason="release r-1")
        await asyncio.gather(*(silencer.unmute(Host(name=f"web-{n}", address=f"10.0.0.{n}"), reason="release r-1")
                               for n in range(3)))
    finally:
        await silencer.close()
        fake.stop()
    assert len(fake.requests) == 9  # each mute a read and a write; each unmute a read (nothing to expire)
    # the three sequential mutes reuse one connection; the concurrent unmutes may open at most one each
    assert len({r.peer for r in fake.requests[:6]}) == 1
    assert len({r.peer for r in fake.requests}) <= 3


def _count_requests(silencer: AlertmanagerSilencer) -> Counter[str]:
    """Every request the silencer's client sends, as "METHOD path" (the real server answers each)."""
    sent: Counter[str] = Counter()

    async def note(request: httpx.Request) -> None:
        sent[f"{request.method} {request.url.path}"] += 1

    silencer._http().event_hooks["request"].append(note)
    return sent


async def test_an_unmute_given_its_mutes_silence_id_expires_it_in_one_call(alertmanager: services.Service) -> None:
    """The id its mute answered is the host's one silence for the reason (a mute reuses an active one): the
    unmute expires it without reading the silences first. An id Alertmanager refuses to expire falls back to
    reading the host's active silences and expiring them, as without an id."""
    url = f"http://127.0.0.1:{alertmanager.port}"
    silencer = AlertmanagerSilencer(AlertmanagerMonitoring(url=url))
    sent = _count_requests(silencer)
    until = datetime.now(UTC) + timedelta(minutes=30)
    first = await silencer.mute(HOST, until=until, reason="release r-3")
    sent.clear()
    await silencer.unmute(HOST, reason="release r-3", silence_id=first)
    assert sent == Counter({f"DELETE /api/v2/silence/{first}": 1})
    assert _silence(url, first)["status"] == {"state": "expired"}

    # an id Alertmanager does not know, while the host has an active silence for the reason: found and expired
    second = await silencer.mute(HOST, until=until, reason="release r-3")
    assert second != first
    sent.clear()
    unknown = "00000000-0000-4000-8000-000000000000"
    await silencer.unmute(HOST, reason="release r-3", silence_id=unknown)
    assert sent[f"DELETE /api/v2/silence/{unknown}"] == 1 and sent["GET /api/v2/silences"] >= 1, sent
    assert sent[f"DELETE /api/v2/silence/{second}"] == 1, sent
    assert not await silencer.is_muted(HOST, reason="release r-3")
    await silencer.unmute(HOST, reason="release r-3", silence_id=unknown)  # nothing left: fine
    await silencer.close()
