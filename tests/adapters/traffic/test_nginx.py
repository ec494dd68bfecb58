"""NginxSwitch against a real nginx 1.22 master and three real backends (hits counted per backend), in both
layouts: the whole upstream block in an include, and bare server lines included inside the block."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.adapters.traffic.nginx import NginxSwitch, NginxTraffic, render_upstream
from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Transport

from .nginx_server import (
    BLOCK_IN_INCLUDE,
    INCLUDE_INSIDE_UPSTREAM,
    Backend,
    Nginx,
    hits,
    start_backends,
    start_nginx,
    stop_backends,
    stop_nginx,
)

CONTROLLER = Host(name="lb1", address="127.0.0.1")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Backend]]:
    started = start_backends(tmp_path_factory.mktemp("backends"), ["app1", "app2", "app3"])
    yield started
    stop_backends(started)


def _hosts(backends: list[Backend]) -> list[Host]:
    return [Host(name=b.name, address=b.address) for b in backends]


def _servers(layout: str, backends: list[Backend]) -> str:
    """The text of the file holding the server lines, all servers in."""
    if layout == BLOCK_IN_INCLUDE:
        return render_upstream("web", _hosts(backends), backends[0].port)
    return "".join(f"server {b.address}:{b.port};  # {b.name}\n" for b in backends)


@pytest.fixture(scope="module", params=[BLOCK_IN_INCLUDE, INCLUDE_INSIDE_UPSTREAM])
def nginx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          backends: list[Backend]) -> Iterator[Nginx]:
    layout = str(request.param)
    server = start_nginx(tmp_path_factory.mktemp("nginx"), _servers(layout, backends), layout)
    yield server
    stop_nginx(server)


@pytest.fixture
def lb(nginx: Nginx, backends: list[Backend]) -> Iterator[Nginx]:
    """Every test starts with all three servers in, loaded, and no graylift side files."""
    yield nginx
    nginx.include.write_text(_servers(nginx.layout, backends))
    for directory in {nginx.upstreams, nginx.include.parent}:
        for extra in directory.iterdir():
            if extra != nginx.include:
                extra.unlink()
    nginx.reload()
    time.sleep(0.5)


def _switch(nginx: Nginx, backends: list[Backend], **kwargs: object) -> NginxSwitch:
    async def local() -> Transport:
        return LocalTransport(CONTROLLER)

    hosts = kwargs.pop("hosts", None)
    options: dict[str, object] = {"include": str(nginx.include), "upstream": "web", "port": backends[0].port,
                                  "nginx_conf": str(nginx.conf), "reload_settle": 0.3} | kwargs
    return NginxSwitch(NginxTraffic(**options), transport_factory=local, hosts=hosts)  # type: ignore[arg-type]


async def _hits(nginx: Nginx, n: int = 30) -> dict[str, int]:
    return dict(await asyncio.to_thread(hits, nginx.port, n))


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the nginx dir (bytes, mtime), but nginx's own error log."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "error.log"}


async def test_take_out_stops_traffic_put_back_restores_it(lb: Nginx, backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    assert switch.name == "nginx:web"
    before = await _hits(lb)
    assert set(before) == {"app1", "app2", "app3"}, before

    await switch.take_out(app1)
    assert await switch.is_out(app1) and not await switch.is_in(app1)
    text = lb.include.read_text()
    assert f"server {app1.address}:{backends[0].port} down;" in text
    assert text.count(" down;") == 1
    assert lb.conf.read_text().count("upstream web {") == (lb.layout == INCLUDE_INSIDE_UPSTREAM)
    out = await _hits(lb, 60)
    assert "app1" not in out and set(out) == {"app2", "app3"}, out

    workers = lb.worker_pids()
    mtime = lb.include.stat().st_mtime_ns
    await switch.take_out(app1)  # idempotent: nothing written, no reload
    assert lb.worker_pids() == workers
    assert lb.include.stat().st_mtime_ns == mtime

    await switch.put_back(app1)
    assert await switch.is_in(app1) and not await switch.is_out(app1)
    assert lb.include.read_text() == _servers(lb.layout, backends)
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
    assert lb.include.read_text().count(" down;") == 2
    assert await _hits(lb) == {"app3": 30}
    await asyncio.gather(switch.put_back(app1), switch.put_back(app2))
    assert set(await _hits(lb, 60)) == {"app1", "app2", "app3"}


async def test_two_switches_on_one_file_do_not_lose_edits(lb: Nginx, backends: list[Backend]) -> None:
    """Two switch objects (e.g. two app entries) on one include: the lock is per (LB host, path)."""
    one, two = _switch(lb, backends), _switch(lb, backends, name="nginx:web-b")
    app1, app2, _ = _hosts(backends)
    await asyncio.gather(one.take_out(app1), two.take_out(app2))
    assert await one.is_out(app1) and await one.is_out(app2)


async def test_failed_nginx_t_restores_the_file_and_reports_nginx_message(lb: Nginx,
                                                                           backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    assert (await switch.preflight([app1])).problems == ()  # the layout is known before the hand edit below
    broken = lb.include.read_text() + "    bogus_directive on;\n"
    lb.include.write_text(broken)  # a hand edit made during the release, never loaded
    workers = lb.worker_pids()
    with pytest.raises(TrafficError, match=r'(?s)rejected.*restored.*unknown directive "bogus_directive"'):
        await switch.take_out(app1)
    assert lb.include.read_text() == broken
    assert not Path(str(lb.include) + ".graylift.bak").exists()
    assert lb.worker_pids() == workers  # not reloaded
    assert set(await _hits(lb)) == {"app1", "app2", "app3"}  # nginx still serves the old config
    assert not await switch.is_out(app1)


async def test_config_nginx_refuses_is_one_line_and_nothing_is_written(lb: Nginx,
                                                                       backends: list[Backend]) -> None:
    broken = lb.include.read_text() + "    bogus_directive on;\n"
    lb.include.write_text(broken)
    before = _snapshot(lb.workdir)
    workers = lb.worker_pids()
    switch = _switch(lb, backends)
    with pytest.raises(TrafficError) as err:
        await switch.take_out(_hosts(backends)[0])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("nginx:web: '") and "-T' failed on lb1: [emerg] unknown directive" in message
    assert "so that 'nginx -t' passes" in message
    report = await switch.preflight(_hosts(backends))
    assert report.problems == (message.replace("nginx:web: ", "nginx:web: every host: ", 1),)
    assert _snapshot(lb.workdir) == before and lb.worker_pids() == workers


async def test_preflight_finds_layout_and_every_host_and_changes_nothing(lb: Nginx,
                                                                         backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    hosts = _hosts(backends)
    await switch.take_out(hosts[2])
    before = _snapshot(lb.workdir)
    workers = lb.worker_pids()
    ghost = Host(name="ghost", address="127.0.0.99")

    fresh = _switch(lb, backends)
    report = await fresh.preflight([*hosts, ghost])
    port = backends[0].port
    assert report.problems == (
        f"nginx:web: ghost: upstream web has no 'server 127.0.0.99:{port}' line in {lb.include}; add it "
        "(graylift only toggles 'down')",)
    if lb.layout == BLOCK_IN_INCLUDE:
        layout = f"nginx:web: upstream web with its servers in {lb.include} (whole block in one file)"
    else:
        layout = f"nginx:web: upstream web in {lb.conf}, servers in {lb.include} (include inside upstream)"
    assert report.notes == (layout, "nginx:web: already marked down: app3")
    assert (await fresh.preflight(hosts)).problems == ()
    assert _snapshot(lb.workdir) == before and lb.worker_pids() == workers
    assert set(await _hits(lb)) == {"app1", "app2"}
    await fresh.put_back(hosts[2])
    assert set(await _hits(lb, 60)) == {"app1", "app2", "app3"}


async def test_include_that_does_not_hold_the_servers_is_refused(lb: Nginx, backends: list[Backend],
                                                                 tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.conf"
    other.write_text(_servers(lb.layout, backends))  # a copy nginx never loads
    switch = _switch(lb, backends, include=str(other))
    report = await switch.preflight(_hosts(backends))
    expected = (f"nginx:web: every host: nginx -T shows the servers of upstream web in {lb.include}, not in "
                f"the configured include {other}; set include to {lb.include}")
    assert report.problems == (expected,)
    with pytest.raises(TrafficError) as err:
        await switch.take_out(_hosts(backends)[0])
    assert str(err.value) == expected.replace(" every host:", "")
    assert other.read_text() == _servers(lb.layout, backends) and " down" not in lb.include.read_text()


async def test_unknown_host_and_wrong_upstream_are_explained(lb: Nginx, backends: list[Backend]) -> None:
    switch = _switch(lb, backends)
    with pytest.raises(TrafficError, match=r"no 'server 127.0.0.99:\d+' line for host ghost in .*never adds"):
        await switch.take_out(Host(name="ghost", address="127.0.0.99"))
    wrong = _switch(lb, backends, upstream="other")
    with pytest.raises(TrafficError, match=r"nginx -T on lb1: no 'upstream other \{' block .*fix upstream"):
        await wrong.take_out(_hosts(backends)[0])
    report = await wrong.preflight(_hosts(backends))
    assert len(report.problems) == 1 and report.problems[0].startswith("nginx:other: every host: nginx -T on lb1")


async def test_file_written_but_not_reloaded_is_not_out_and_is_repaired(lb: Nginx,
                                                                         backends: list[Backend]) -> None:
    """A controller that died between rename and reload: verify says 'not out', take_out reloads."""
    switch = _switch(lb, backends)
    app1 = _hosts(backends)[0]
    await switch.take_out(app1)
    await switch.put_back(app1)
    lb.include.write_text(lb.include.read_text().replace(f"{app1.address}:{backends[0].port};",
                                                         f"{app1.address}:{backends[0].port} down;"))
    assert not await switch.is_out(app1) and not await switch.is_in(app1)
    assert "app1" in await _hits(lb, 60)  # nginx still sends it traffic
    await switch.take_out(app1)
    assert await switch.is_out(app1)
    assert "app1" not in await _hits(lb, 60)


async def test_seed_with_bad_server_params_is_refused_and_removed(lb: Nginx, backends: list[Backend]) -> None:
    seed = lb.upstreams / "seeded.conf"
    hosts = _hosts(backends)
    bad = _switch(lb, backends, include=str(seed), upstream="seeded", hosts=hosts,
                  server_params="max_fails=3 bogus_param=1")
    assert (await bad.preflight(hosts)).notes == (
        f"nginx:seeded: {seed} on lb1 does not exist; graylift seeds it with upstream seeded and 3 servers at "
        "the first take-out",)
    with pytest.raises(TrafficError, match=r'invalid parameter "bogus_param=1"'):
        await bad.take_out(hosts[0])
    assert not seed.exists()
    good = _switch(lb, backends, include=str(seed), upstream="seeded", hosts=hosts,
                   server_params="max_fails=3", keepalive=8)
    await good.take_out(hosts[0])
    text = seed.read_text()
    assert f"server {hosts[0].address}:{backends[0].port} max_fails=3 down;" in text
    assert "keepalive 8;" in text and text.count("    server ") == 3
    assert await good.is_out(hosts[0]) and await good.is_in(hosts[1])
    report = await _switch(lb, backends, include=str(seed), upstream="seeded").preflight(hosts)
    assert report.problems == () and report.notes[1] == "nginx:seeded: already marked down: app1"


async def test_missing_include_without_seeding_is_explained(lb: Nginx, backends: list[Backend],
                                                            tmp_path: Path) -> None:
    missing = _switch(lb, backends, include=str(tmp_path / "nope.conf"), upstream="nope")
    with pytest.raises(TrafficError, match=r"no 'upstream nope \{' block"):
        await missing.is_out(_hosts(backends)[0])
    assert not (tmp_path / "nope.conf").exists()
