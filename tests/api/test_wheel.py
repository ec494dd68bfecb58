"""The wheel carries everything `graylift serve` needs (templates, htmx, migrations): built with
`python -m build`, installed with pip outside the repository, it serves the console and the API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_the_wheel_installs_and_serves_without_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("graylift-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = os.environ | {"PYTHONPATH": str(target), "HOME": str(work)}
    where = subprocess.run([sys.executable, "-c", "import graylift; print(graylift.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(target)), where  # not the repository's
    graylift = [sys.executable, "-m", "graylift"]
    subprocess.run([*graylift, "init", "graylift.yaml"], cwd=work, env=env, check=True, capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([*graylift, "-c", "graylift.yaml", "serve", "--port", str(port), "--no-workers"],
                              cwd=work, env=env | {"GRAYLIFT_DB": f"sqlite:///{work}/state.db"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.stdout else ""
            time.sleep(0.2)
        assert "Log in" in httpx.get(f"{base}/login", trust_env=False).text
        assert len(httpx.get(f"{base}/static/vendor/htmx.min.js", trust_env=False).content) > 40_000
        assert httpx.get(f"{base}/openapi.json", trust_env=False).json()["info"]["title"] == "graylift"
        assert httpx.get(f"{base}/api/v1/apps", trust_env=False).status_code == 401
    finally:
        server.terminate()
        server.wait(20)
        if server.stdout is not None:
            server.stdout.close()
