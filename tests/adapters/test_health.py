"""Health probes through a local transport, against real apps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from graylift.adapters.health import (
    CommandProbe,
    HttpProbe,
    ProcessProbe,
    TcpProbe,
    check_all,
    probes_from_config,
    wait_on_host,
)
from graylift.adapters.transport.local import LocalTransport
from graylift.config import load_config
from graylift.core.model import Host
from graylift.lab import services
from graylift.ports import ProbeResult
from tests.adapters.conftest import App


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


class Counting(LocalTransport):
    """A local transport that keeps every command it runs and what went to its stdin."""

    def __init__(self) -> None:
        super().__init__(Host(name="controller", address="127.0.0.1"))
        self.runs: list[tuple[str, str | None]] = []

    async def run(self, command: str, *, timeout: float, check: bool = True, stdin: str | None = None) -> Any:
        self.runs.append((command, stdin))
        return await super().run(command, timeout=timeout, check=check, stdin=stdin)


async def test_the_probes_of_a_check_run_in_one_command_and_read_as_each_alone(apps: list[App],
                                                                               tmp_path: Path) -> None:
    port, closed = apps[0].port, services.free_port()
    alone = LocalTransport(Host(name="controller", address="127.0.0.1"))
    fused = Counting()
    probes = [ProcessProbe(f"graylift_test_app.py {port} app1"), TcpProbe(port),
              HttpProbe(f"http://127.0.0.1:{port}/health", body="ok"), CommandProbe("echo fine; true")]
    assert (await check_all(probes, fused)) == ProbeResult(True, "all probes pass")
    assert len(fused.runs) == 1 and fused.runs[0][0] == "sh -s"  # the probes' text only on stdin
    for probe in probes:  # each one's own reading of its output, as when it runs alone
        assert (await probe.check(alone)).ok

    # (probe, what it says, whether it exits non-zero on the host: then the probes after it do not run)
    failing = [(ProcessProbe("graylift-no-such-process-4713"), "no process matches", True),
               (TcpProbe(closed), f"127.0.0.1:{closed} does not accept connections", True),
               (HttpProbe(f"http://127.0.0.1:{port}/health", status=204), "returned 200, expected 204", True),
               (HttpProbe(f"http://127.0.0.1:{port}/", body="ok"), "the body lacks 'ok'", True),
               (CommandProbe("printf 'no newline at the end'; exit 3"), "exited 3: no newline at the end", True),
               (CommandProbe("sleep 5", timeout=0.3), "timed out after 0.3s", True)]
    after = tmp_path / "after"
    for bad, said, stops in failing:
        fused.runs.clear()
        result = await check_all([TcpProbe(port), bad, CommandProbe(f"touch {after}")], fused)
        assert not result.ok and result.detail.startswith(f"{bad.name}: ") and said in result.detail, result
        assert len(fused.runs) == 1
        assert (await bad.check(alone)).detail in result.detail  # the same words as alone
        assert after.exists() is not stops, bad.name
        after.unlink(missing_ok=True)


def test_probes_from_config_are_filled_in_per_host(tmp_path: Path) -> None:
    config = tmp_path / "graylift.yaml"
    config.write_text(
        "apps:\n"
        "  web:\n"
        "    package: {type: jar, url: 'http://repo/{app}-{version}.{ext}', sha256_url: '{url}.sha256'}\n"
        "    deploy: {dir: /srv/web}\n"
        "    commands: {start: 'sh {current}/start', stop: 'sh {current}/stop'}\n"
        "    health:\n"
        "      process: '{app}-{version}.jar'\n"
        "      http: {url: 'http://{address}:8080/health'}\n"
        "      command: 'test -d {release_dir}'\n"
    )
    cfg = load_config(config).app_for_env("web", "prod")
    values = {"app": "web", "version": "2.0.0", "deploy_dir": "/srv/web", "current": "/srv/web/current",
              "release_dir": "/srv/web/releases/2.0.0", "host": "web-01", "address": "10.0.0.7"}
    found = probes_from_config(cfg.health, values)
    assert [type(p) for p in found] == [ProcessProbe, HttpProbe, CommandProbe]
    assert found[0].pattern == "web-2.0.0.jar"  # type: ignore[attr-defined]
    assert found[1].url == "http://10.0.0.7:8080/health"  # type: ignore[attr-defined]
    assert found[2].command == "test -d /srv/web/releases/2.0.0"  # type: ignore[attr-defined]


async def test_a_wait_on_the_host_returns_as_soon_as_the_app_is_healthy(apps: list[App], tmp_path: Path) -> None:
    """The health step's wait is one command on the host: it polls there every ``interval`` and comes back at
    the first attempt that passes, with how many it made; never healthy, it comes back after ``retries``."""
    port = apps[0].port
    ready = tmp_path / "ready"
    probes = [TcpProbe(port), HttpProbe(f"http://127.0.0.1:{port}/health", body="ok"),
              CommandProbe(f"test -e {ready}")]
    fused = Counting()

    async def make_ready() -> None:
        await asyncio.sleep(0.6)
        ready.touch()

    maker = asyncio.create_task(make_ready())
    attempts, result = await wait_on_host(probes, fused, retries=400, interval=0.05) or (0, None)
    await maker
    assert result == ProbeResult(True, "all probes pass") and len(fused.runs) == 1
    assert 3 <= attempts < 400  # polled on the host (several attempts), and back at the first that passed

    ready.unlink()
    attempts, result = await wait_on_host(probes, fused, retries=4, interval=0.01) or (0, None)
    assert attempts == 4 and result is not None and not result.ok
    assert result.detail == f"command:test -e {ready}: 'test -e {ready}' exited 1"
    assert await wait_on_host([], fused, retries=1, interval=0) is None  # nothing to run on the host
