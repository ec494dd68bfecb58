"""NginxSwitch against a real nginx 1.22 master and three real backends (hits counted per backend)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.adapters.local import LocalTransport
from graylift.adapters.nginx import NginxSwitch, render_upstream
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Transport

from .nginx_server import Backend, Nginx, hits, start_backends, start_nginx, stop_backends, stop_nginx

CONTROLLER = Host(name="lb1", address="127.0.0.1")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Backend]]:
    started = start_backends(tmp_path_factory.mktemp("backends"), ["app1", "app2", "app3"])
    yield started
    stop_backends(started)


def _hosts(backends: list[Backend]) -> list[Host]:
    return [Host(name=b.name, address=b.address) for b in backends]


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, backends: list[Backend]) -> Iterator[Nginx]:
    server = start_nginx(tmp_path_factory.mktemp("nginx"), render_upstream("web", _hosts(backends),
                                                                             backends[0].port))
    yield server
    stop_nginx(server)


@pytest.fixture
def lb(nginx: Nginx, backends: list[Backend]) -> Iterator[Nginx]:
    """Every test starts with all three servers in, loaded, and no graylift side files."""
    yield nginx
    (nginx.upstreams / "web.conf").write_text(render_upstream("web", _hosts(backends), backends[0].port))
    for extra in nginx.upstreams.iterdir():
        if extra.name != "web.conf":
            extra.unlink()
    subprocess.run(["nginx", "-c", str(nginx.conf), "-s", "reload"], check=True, capture_output=True)
    time.sleep(0.5)


def _switch(nginx: Nginx, backends: list[Backend], **kwargs: object) -> NginxSwitch:
    async def local() -> Transport:
        return LocalTransport(CONTROLLER)

    options: dict[str, object] = {"include_path": str(nginx.upstreams / "web.conf"), "upstream": "web",
                                  "port": backends[0].port, "nginx_conf": str(nginx.conf),
                                  "reload_settle": 0.3} | kwargs
    return NginxSwitch(transport_factory=local, **options)  # type: ignore[arg-type]


async def _hits(nginx: Nginx, n: int = 30) -> dict[str, int]:
    return dict(await asyncio.to_thread(hits, nginx.port, n))


async def test_take_out_stops_traffic_put_back_restores_it(lb: Nginx, backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    assert switch.name == "nginx:web"
    before = await _hits(lb)
    assert set(before) == {"app1", "app2", "app3"}, before

    await switch.take_out(app1)
    assert await switch.is_out(app1) and not await switch.is_in(app1)
    text = (lb.upstreams / "web.conf").read_text()
    assert f"server {app1.address}:{backends[0].port} down;" in text
    assert text.count(" down;") == 1
    out = await _hits(lb, 60)
    assert "app1" not in out and set(out) == {"app2", "app3"}, out

    workers = lb.worker_pids()
    mtime = (lb.upstreams / "web.conf").stat().st_mtime_ns
    await switch.take_out(app1)  # idempotent: nothing written, no reload
    assert lb.worker_pids() == workers
    assert (lb.upstreams / "web.conf").stat().st_mtime_ns == mtime

    await switch.put_back(app1)
    assert await switch.is_in(app1) and not await switch.is_out(app1)
    back = await _hits(lb, 60)
    assert set(back) == {"app1", "app2", "app3"}, back
    await switch.put_back(app1)  # idempotent
    assert await switch.in_flight(app1) is None
    await switch.close()


async def test_parallel_take_outs_leave_both_down(lb: Nginx, backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    app1, app2, _ = _hosts(backends)
    await asyncio.gather(switch.take_out(app1), switch.take_out(app2))
    assert await switch.is_out(app1) and await switch.is_out(app2)
    assert (lb.upstreams / "web.conf").read_text().count(" down;") == 2
    assert await _hits(lb) == {"app3": 30}
    await asyncio.gather(switch.put_back(app1), switch.put_back(app2))
    assert set(await _hits(lb, 60)) == {"app1", "app2", "app3"}


async def test_two_switches_on_one_file_do_not_lose_edits(lb: Nginx, backends: list[Backend]) -> None:
    """Two switch objects (e.g. two app entries) on one include: the lock is per (LB host, path)."""
    one, two = _switch(lb, backends), _switch(lb, backends, name="nginx:web-b")
    app1, app2, _ = _hosts(backends)
    await asyncio.gather(one.take_out(app1), two.take_out(app2))
    assert await one.is_out(app1) and await one.is_out(app2)


async def test_failed_nginx_t_keeps_old_file_and_reports_nginx_message(lb: Nginx,
                                                                        backends: list[Backend]) -> None:
    include = lb.upstreams / "web.conf"
    broken = include.read_text().replace("upstream web {", "upstream web {\n    bogus_directive on;")
    include.write_text(broken)  # a hand edit (or a bad template) that was never loaded
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    workers = lb.worker_pids()
    with pytest.raises(TrafficError, match=r'(?s)rejected.*restored.*unknown directive "bogus_directive"'):
        await switch.take_out(app1)
    assert include.read_text() == broken
    assert not (lb.upstreams / "web.conf.graylift.bak").exists()
    assert lb.worker_pids() == workers  # not reloaded
    assert set(await _hits(lb)) == {"app1", "app2", "app3"}  # nginx still serves the old config
    assert not await switch.is_out(app1)


async def test_seed_with_bad_server_params_is_refused_and_removed(lb: Nginx, backends: list[Backend]) -> None:
    seed = lb.upstreams / "seeded.conf"
    hosts = _hosts(backends)
    bad = _switch(lb, backends, include_path=str(seed), upstream="seeded", hosts=hosts,
                  server_params="max_fails=3 bogus_param=1")
    with pytest.raises(TrafficError, match=r'invalid parameter "bogus_param=1"'):
        await bad.take_out(hosts[0])
    assert not seed.exists()
    good = _switch(lb, backends, include_path=str(seed), upstream="seeded", hosts=hosts,
                   server_params="max_fails=3", keepalive=8)
    await good.take_out(hosts[0])
    text = seed.read_text()
    assert f"server {hosts[0].address}:{backends[0].port} max_fails=3 down;" in text
    assert "keepalive 8;" in text and text.count("    server ") == 3
    assert await good.is_out(hosts[0]) and await good.is_in(hosts[1])


async def test_unknown_host_and_missing_file_are_explained(lb: Nginx, backends: list[Backend],
                                                           tmp_path: Path) -> None:
    switch = _switch(lb, backends)
    with pytest.raises(TrafficError, match=r"no 'server 127.0.0.99:\d+' line for host ghost.*never adds"):
        await switch.take_out(Host(name="ghost", address="127.0.0.99"))
    missing = _switch(lb, backends, include_path=str(tmp_path / "nope.conf"))
    with pytest.raises(TrafficError, match=r"nope.conf on lb1 does not exist"):
        await missing.is_out(_hosts(backends)[0])
    wrong = _switch(lb, backends, upstream="other")
    with pytest.raises(TrafficError, match=r"no 'upstream other \{' line"):
        await wrong.take_out(_hosts(backends)[0])


async def test_file_written_but_not_reloaded_is_not_out_and_is_repaired(lb: Nginx,
                                                                         backends: list[Backend]) -> None:
    """A controller that died between rename and reload: verify says 'not out', take_out reloads."""
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    await switch.take_out(app1)
    await switch.put_back(app1)
    include = lb.upstreams / "web.conf"
    include.write_text(include.read_text().replace(f"{app1.address}:{backends[0].port};",
                                                   f"{app1.address}:{backends[0].port} down;"))
    assert not await switch.is_out(app1) and not await switch.is_in(app1)
    assert "app1" in await _hits(lb, 60)  # nginx still sends it traffic
    await switch.take_out(app1)
    assert await switch.is_out(app1)
    assert "app1" not in await _hits(lb, 60)
