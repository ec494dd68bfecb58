"""NginxPlusSwitch against the FAKE nginx Plus API (tests/fakes/nginx_plus.py), which follows the documented API."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator

import pytest

from graylift.adapters.traffic.nginx_plus import NginxPlusSwitch, NginxPlusTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from tests.fakes.nginx_plus import FakePlus

HOSTS = [Host(name="app1", address="10.213.0.1"), Host(name="app2", address="10.213.0.2")]


@pytest.fixture
def fake() -> Iterator[tuple[FakePlus, str]]:
    state = FakePlus()
    for host in HOSTS:
        state.add(f"{host.address}:8080")
    url = state.start()
    yield state, f"{url}/api"
    state.stop()


async def test_drain_waits_for_active_then_down_and_back(fake: tuple[FakePlus, str]) -> None:
    state, url = fake
    switch = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="web", port=8080, poll_interval=0.01, up_timeout=2))
    try:
        assert await switch.is_in(HOSTS[0]) and not await switch.is_out(HOSTS[0])
        state.active[0] = 3
        await switch.take_out(HOSTS[0])
        assert state.patches == [(0, {"drain": True}), (0, {"down": True})]
        assert state.active[0] == 0
        assert await switch.is_out(HOSTS[0]) and not await switch.is_in(HOSTS[0])
        assert await switch.is_in(HOSTS[1])
        await switch.take_out(HOSTS[0])  # idempotent: already down, no PATCH
        assert len(state.patches) == 2
        await switch.put_back(HOSTS[0])
        assert state.patches[-1] == (0, {"down": False, "drain": False})
        assert await switch.is_in(HOSTS[0]) and await switch.in_flight(HOSTS[0]) == 0
    finally:
        await switch.close()


async def test_errors_name_the_problem(fake: tuple[FakePlus, str]) -> None:
    state, url = fake
    switch = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="web", port=8080))
    missing = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="nope", port=8080))
    dead = NginxPlusSwitch(NginxPlusTraffic(url="http://127.0.0.1:9/api", upstream="web", port=8080, timeout=1))
    try:
        with pytest.raises(TrafficError, match=r"no server 10.213.0.9:8080 for host ghost"):
            await switch.take_out(Host(name="ghost", address="10.213.0.9"))
        with pytest.raises(TrafficError, match=r"upstreams/nope/servers returned HTTP 404: UpstreamNotFound.*zone"):
            await missing.is_out(HOSTS[0])
        state.write = False
        with pytest.raises(TrafficError, match=r"HTTP 405: MethodDisabled.*write=on"):
            await switch.take_out(HOSTS[0])
        with pytest.raises(TrafficError,
                           match=r"failed: ConnectError.*nginx Plus running with its 'api' location at http://127.0.0.1:9/api"):
            await dead.is_in(HOSTS[0])
    finally:
        for s in (switch, missing, dead):
            await s.close()


async def test_preflight_one_read_and_changes_nothing(fake: tuple[FakePlus, str]) -> None:
    state, url = fake
    switch = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="web", port=8080, poll_interval=0.01))
    missing = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="nope", port=8080))
    try:
        await switch.take_out(HOSTS[1])
        before, seen = copy.deepcopy(state.servers), len(state.requests)
        ghost = Host(name="ghost", address="10.213.0.9")
        report = await switch.preflight([*HOSTS, ghost])
        assert report.problems == ("nginx-plus:web: ghost: upstream web has no server 10.213.0.9:8080 for host "
                                   "ghost; add it to the upstream (graylift only drains and re-enables servers)",)
        assert report.notes == (f"nginx-plus:web: upstream web has 2 server(s) at {url}",
                                "nginx-plus:web: already down or draining: app2")
        assert [(r.method, r.path) for r in state.requests[seen:]] == [("GET", "/api/8/http/upstreams/web/servers")]
        assert state.servers == before
        assert (await missing.preflight(HOSTS)).problems == (
            "nginx-plus:nope: every host: GET /api/8/http/upstreams/nope/servers returned HTTP 404: "
            "UpstreamNotFound: upstream not found; does the upstream exist and have a 'zone'?",)
    finally:
        await switch.close()
        await missing.close()


async def test_hosts_waiting_at_once_share_each_read(fake: tuple[FakePlus, str]) -> None:
    """A batch's hosts poll their servers at once: one GET of each kind per poll, not one per host; each
    caller's answer is from a GET sent after it asked, so a PATCH before it is seen."""
    state, url = fake
    switch = NginxPlusSwitch(NginxPlusTraffic(url=url, upstream="web", port=8080, poll_interval=0.01))
    try:
        assert await switch.is_in(HOSTS[0])
        seen = len(state.requests)
        assert await asyncio.gather(*(switch.is_in(host) for host in HOSTS * 10)) == [True] * 20
        gets = [r.path for r in state.requests[seen:]]
        assert set(gets) == {"/api/8/http/upstreams/web/servers", "/api/8/http/upstreams/web"}
        assert len(gets) <= 4, gets  # two kinds, each at most one in flight and one next
        await switch.take_out(HOSTS[0])
        out = await asyncio.gather(*(switch.is_out(host) for host in HOSTS * 5))
        assert out == [True, False] * 5
    finally:
        await switch.close()
