"""What every tool of ``bench/vs_peers.py`` shares: the batch plan, the per-host shell steps, the HAProxy calls,
and the physical limit. Standard library only: pyinfra's venv and Ansible's controller-side script import it too.

The per-host release, the same for every tool (graylift does the same steps through its own code, plus its
pre-check and the Alertmanager mute/unmute):

    stage   download the package from the artifact server into releases/<version>.partial, sha256 check,
            unpack (tar.gz) or keep the file (war), rename to releases/<version>
    drain   ``set server <app>/<host> state drain`` on HAProxy's runtime socket, wait for scur 0 (10 s at most)
    stop    the app's stop command          switch  ``current`` -> releases/<version> (atomic rename)
    start   the app's start command         health  /health on the host answers 200 "ok", polled every 0.25 s
    ready   ``set server ... state ready``, wait until HAProxy reports the server UP (its check passing)

Stage comes before the drain for every tool (as graylift does): the host leaves the LB only for
stop/switch/start/health.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

q = shlex.quote
HEALTH_INTERVAL = 0.25  # graylift's lab config: health.interval
HEALTH_TIMEOUT = {"pyapp": 40 * 0.25 + 20, "shop": 120 * 0.25 + 30}
DRAIN_TIMEOUT = 10.0  # graylift's lab config: haproxy drain_timeout
UP_TIMEOUT = 30.0  # graylift's HAProxy put_back: up_timeout
POLL = 0.2  # graylift's HAProxy poll interval
CONNECT_TIMEOUT = 30  # SSH connect timeout for every tool (the shared 2-core machine can be very busy)
EXT = {"pyapp": "tar.gz", "shop": "war"}


def batch_size(hosts: int) -> int:
    """b = ceil(N/4), capped under half the fleet (b * 2 < N), at least 1.

    >>> [batch_size(n) for n in (2, 3, 6, 12, 50, 200)]
    [1, 1, 2, 3, 13, 50]
    """
    return max(1, min(math.ceil(hosts / 4), (hosts - 1) // 2))


def batch_plan(hosts: Sequence[str], size: int) -> list[list[str]]:
    """The canary (the first host), then the others in order, ``size`` at a time.

    >>> batch_plan(["a", "b", "c", "d", "e", "f"], 2)
    [['a'], ['b', 'c'], ['d', 'e'], ['f']]
    """
    if not hosts:
        return []
    rest = list(hosts[1:])
    return [[hosts[0]], *[rest[i:i + size] for i in range(0, len(rest), size)]]


@dataclass(frozen=True)
class HostWaits:
    """One host's inherent waits, seconds: drain (controller: drain sent -> scur 0), stop (host: the stop
    command's duration), start_to_healthy (host: start command begun -> /health answered ok)."""

    drain: float
    stop: float
    start_to_healthy: float

    @property
    def total(self) -> float:
        return self.drain + self.stop + self.start_to_healthy


def physical_limit(batches: Sequence[Sequence[str]], waits: Mapping[str, HostWaits]) -> float:
    """Σ over batches of max over the batch's hosts of (drain + stop + start-to-healthy).

    A batch cannot end before its slowest host has drained, stopped and come back healthy, and a batch
    starts only when the one before it has ended; staging, switching, SSH, HAProxy calls and bookkeeping
    are the tool's overhead. Hosts missing from ``waits`` raise KeyError (a limit from partial data is wrong).

    >>> w = {"a": HostWaits(0.1, 0.2, 0.3), "b": HostWaits(0.0, 0.1, 0.2), "c": HostWaits(0.5, 0.5, 0.5)}
    >>> round(physical_limit([["a"], ["b", "c"]], w), 3)
    2.1
    """
    return sum(max(waits[h].total for h in batch) for batch in batches if batch)


def parse_host_times(line: str) -> tuple[float, float]:
    """The minimal driver's last remote line ``times <stop0> <stop1> <start0> <healthy>`` (epoch seconds)
    -> (stop seconds, start-to-healthy seconds).

    >>> parse_host_times("times 10.0 10.5 10.6 11.6")
    (0.5, 1.0)
    """
    words = line.split()
    if len(words) != 5 or words[0] != "times":
        raise ValueError(f"not a times line: {line!r}")
    stop0, stop1, start0, healthy = (float(w) for w in words[1:])
    return round(stop1 - stop0, 6), round(healthy - start0, 6)


# shell steps ---------------------------------------------------------------------------------------------

def package_url(base_url: str, app: str, version: str) -> str:
    return f"{base_url}/{app}/{version}/{app}-{version}.{EXT[app]}"


def stage_script(app: str, deploy: str, version: str, url: str, sha256: str) -> str:
    final, tmp = f"{deploy}/releases/{version}", f"{deploy}/releases/.{version}.partial"
    archive = f"{tmp}/{app}-{version}.{EXT[app]}"
    unpack = f"tar -xzf {q(archive)} -C {q(tmp)} --no-same-owner && " if EXT[app] == "tar.gz" else ""
    return (f"set -e; rm -rf {q(tmp)}; mkdir -p {q(tmp)}; curl -fsS --retry 2 -o {q(archive)} {q(url)}; "
            f"echo {q(sha256 + '  ' + archive)} | sha256sum -c --quiet; {unpack}"
            f"echo {q(sha256)} > {q(tmp + '/.graylift-sha256')}; echo {q(version)} > {q(tmp + '/.graylift-version')}; "
            f"rm -rf {q(final)}; mv {q(tmp)} {q(final)}")


def stop_command(app: str, deploy: str) -> str:
    return f"sh {q(deploy)}/current/bin/stop" if app == "pyapp" else "sh /srv/shop/bin/tomcat-stop"


def start_command(app: str, deploy: str) -> str:
    return (f"sh {q(deploy)}/current/bin/start" if app == "pyapp"
            else f"sh /srv/shop/bin/tomcat-start {q(deploy)}/current")


def switch_script(deploy: str, version: str) -> str:
    link, current = q(deploy + "/.current.tmp"), q(deploy + "/current")
    return f"ln -sfn {q('releases/' + version)} {link} && mv -Tf {link} {current}"


def health_script(app: str, port: int, interval: float = HEALTH_INTERVAL) -> str:
    """Poll /health until it answers 200 with a body starting "ok"; exit 1 after the app's health timeout."""
    url = f"http://127.0.0.1:{port}/health"
    tries = math.ceil(HEALTH_TIMEOUT[app] / interval)
    return (f"i=0; until curl -fsS -m 2 {q(url)} 2>/dev/null | grep -q '^ok'; do i=$((i+1)); "
            f"[ $i -ge {tries} ] && {{ echo 'not healthy' >&2; exit 1; }}; sleep {interval:g}; done")


# HAProxy runtime API (blocking sockets; pyinfra's gevent makes them cooperative) -------------------------

def haproxy_command(sock: str, line: str, timeout: float = 5.0, attempts: int = 5) -> str:
    """One runtime API command on a fresh connection. The stats socket takes few connections at once
    (``stats maxconn``, 10 by default): a refused or reset connection is retried, as graylift's adapter does."""
    for attempt in range(1, attempts + 1):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(sock)
                s.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
        except (ConnectionRefusedError, ConnectionResetError, BlockingIOError):
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def stat_row(answer: str, backend: str, server: str) -> dict[str, str]:
    for row in csv.DictReader(io.StringIO(answer.lstrip("# "))):
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    raise LookupError(f"HAProxy has no server {backend}/{server}")


def set_state(sock: str, backend: str, server: str, state: str) -> None:
    answer = haproxy_command(sock, f"set server {backend}/{server} state {state}").strip()
    if answer:
        raise RuntimeError(f"set server {backend}/{server} state {state}: {answer}")


def drain(sock: str, backend: str, server: str, *, poll: float = POLL, timeout: float = DRAIN_TIMEOUT,
          sleep: Callable[[float], None] = time.sleep) -> float:
    """Drain the server and wait for 0 current sessions; return the seconds it took."""
    started = time.monotonic()
    set_state(sock, backend, server, "drain")
    while int(stat_row(haproxy_command(sock, "show stat"), backend, server).get("scur") or 0) > 0:
        if time.monotonic() - started > timeout:
            break
        sleep(poll)
    return time.monotonic() - started


def ready(sock: str, backend: str, server: str, *, poll: float = POLL, timeout: float = UP_TIMEOUT,
          sleep: Callable[[float], None] = time.sleep) -> float:
    """Put the server back and wait until HAProxy reports it UP; return the seconds it took."""
    started = time.monotonic()
    set_state(sock, backend, server, "ready")
    while stat_row(haproxy_command(sock, "show stat"), backend, server).get("status") != "UP":
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{backend}/{server} not UP {timeout:g}s after ready")
        sleep(poll)
    return time.monotonic() - started


def step_scripts(spec: Mapping[str, object]) -> dict[str, str]:
    """The per-host shell steps for a release ``spec`` (the JSON every tool gets from vs_peers.py)."""
    app, deploy, version = str(spec["app"]), str(spec["deploy"]), str(spec["version"])
    return {"stage": stage_script(app, deploy, version, str(spec["url"]), str(spec["sha256"])),
            "stop": stop_command(app, deploy), "switch": switch_script(deploy, version),
            "start": start_command(app, deploy), "health": health_script(app, int(str(spec["port"])))}
