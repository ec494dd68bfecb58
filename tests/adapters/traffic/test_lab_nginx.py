"""The lab's nginx (graylift.lab.nginx) in both layouts, driven through the ``type: nginx`` entry the lab writes
into graylift.yaml: real nginx, real backends on loopback; no namespaces needed."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.adapters.registry import Build
from graylift.adapters.traffic.nginx import NginxSwitch, NginxTraffic
from graylift.core.model import Host
from graylift.errors import GrayliftError
from graylift.lab import files, services
from graylift.lab import nginx as lab_nginx
from graylift.lab.info import LabHost

from .nginx_server import Backend, hits, start_backends, stop_backends

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab's nginx runs as 'user root'")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Backend]]:
    started = start_backends(tmp_path_factory.mktemp("backends"), ["lab1", "lab2"], first_address=41)
    yield started
    stop_backends(started)


def _lab_hosts(backends: list[Backend]) -> list[LabHost]:
    return [LabHost(name=b.name, index=i, address=b.address, group="beta", zone="z1", netns="-", veth="-", pid=0,
                    dir="-") for i, b in enumerate(backends, 1)]


@pytest.fixture(params=lab_nginx.LAYOUTS)
def lab_lb(request: pytest.FixtureRequest, tmp_path: Path,
           backends: list[Backend]) -> Iterator[lab_nginx.Nginx]:
    nginx = lab_nginx.start_nginx(tmp_path / "nginx", _lab_hosts(backends), {"pyapp": backends[0].port},
                                  {"pyapp": services.free_port()}, layout=str(request.param))
    yield nginx
    services.stop_service(nginx.service, timeout=5)


def _switch(nginx: lab_nginx.Nginx, port: int) -> NginxSwitch:
    """The switch wiring would build from the entry ``graylift lab up`` writes."""
    entry = NginxTraffic.model_validate(files.nginx_entry(include_path=nginx.includes["pyapp"], app="pyapp",
                                                          port=port, nginx_conf=str(nginx.conf)))
    return NginxSwitch.from_config(entry.model_copy(update={"reload_settle": 0.3}), Build("traffic[1]"))


async def test_lab_nginx_layouts_release_through_the_written_entry(lab_lb: lab_nginx.Nginx,
                                                                   backends: list[Backend]) -> None:
    port = int(lab_lb.urls["pyapp"].rsplit(":", 1)[1])
    include = Path(lab_lb.includes["pyapp"])
    conf = lab_lb.conf.read_text()
    if lab_lb.layout == lab_nginx.INCLUDE_INSIDE_UPSTREAM:
        assert "upstream pyapp_upstream {" in conf and "include upstreams/pyapp.conf;" in conf
        lines = [line for line in include.read_text().splitlines() if not line.startswith("#")]
        assert lines and all(line.startswith("server ") for line in lines)  # only server lines
    else:
        assert f"include {include};" in conf and "upstream pyapp_upstream {" in include.read_text()
    switch = _switch(lab_lb, backends[0].port)
    hosts = [Host(name=b.name, address=b.address) for b in backends]
    report = await switch.preflight(hosts)
    assert report.problems == ()
    assert report.notes[0].endswith("(include inside upstream)" if lab_lb.layout == lab_nginx.INCLUDE_INSIDE_UPSTREAM
                                    else "(whole block in one file)")
    assert set(await asyncio.to_thread(hits, port, 20)) == {"lab1", "lab2"}
    await switch.take_out(hosts[0])
    assert await switch.is_out(hosts[0])
    assert set(await asyncio.to_thread(hits, port, 20)) == {"lab2"}
    await switch.put_back(hosts[0])
    assert await switch.is_in(hosts[0])
    assert set(await asyncio.to_thread(hits, port, 40)) == {"lab1", "lab2"}
    await switch.close()
    check = subprocess.run([lab_nginx.NGINX, "-t", "-q", "-c", str(lab_lb.conf)], capture_output=True, check=False)
    assert check.returncode == 0


def test_unknown_layout_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GrayliftError, match=r"^unknown nginx layout 'sideways': choose block-in-include or "
                                            r"include-inside-upstream$"):
        lab_nginx.start_nginx(tmp_path, [], {}, {}, layout="sideways")
