"""The lab's Prometheus (Debian's ``prometheus``): scrapes every lab host's app ``/metrics`` each second.

Each target carries the label ``host`` (the lab host's name), so a canary analysis query selects a group
of hosts with ``host=~"{hosts}"``. Run as a plain process like the lab's other servers; ``lab down`` stops
it through its pidfile.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from graylift.lab.services import Service, _http_ok, _ready_or_stop, _require, _spawn

SCRAPE_SECONDS = 1.0


def prometheus_config(targets: Sequence[tuple[str, str]], port: int, scrape_seconds: float = SCRAPE_SECONDS) -> str:
    """The config (JSON is YAML) scraping ``address:port/metrics`` of each ``(host name, address)``."""
    config = {
        "global": {"scrape_interval": f"{round(scrape_seconds * 1000)}ms",
                   "scrape_timeout": f"{round(scrape_seconds * 800)}ms",
                   "evaluation_interval": "15s"},
        "scrape_configs": [{"job_name": "lab", "static_configs": [
            {"targets": [f"{address}:{port}"], "labels": {"host": name}} for name, address in targets]}],
    }
    return json.dumps(config, indent=2) + "\n"


def start_prometheus(workdir: Path, listen_port: int, targets: Sequence[tuple[str, str]], app_port: int) -> Service:
    """Prometheus on 127.0.0.1:``listen_port``, scraping the targets; returns once it is ready."""
    binary = _require("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(prometheus_config(targets, app_port))
    argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{listen_port}", "--storage.tsdb.retention.time=2h",
            "--log.level=warn"]
    service = _spawn("prometheus", argv, workdir, listen_port)
    # ready, and every target scraped once (its service discovery hands targets over after ~5 s)
    return _ready_or_stop(service, check=lambda: _http_ok(f"http://127.0.0.1:{listen_port}/-/ready")
                          and _scraped(listen_port) >= len(targets), timeout=60)


def _scraped(port: int) -> int:
    """How many targets Prometheus has scraped at least once (0 when it cannot tell yet)."""
    query = urllib.parse.urlencode({"query": "count(up)"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=2) as answer:
            result = json.load(answer)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return 0
    return int(float(result[0]["value"][1])) if result else 0
