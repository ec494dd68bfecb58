"""The CI script of docs/ci.md (packaging/ci/graylift-release.sh), run as a pipeline runs it, against a live
server: a release without approval, one that waits for an approver and a promotion, one refused."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from graylift.core.state import ReleaseState
from tests.api.conftest import APP, Server

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "ci" / "graylift-release.sh"


def pipeline(server: Server, user: str, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {"GRAYLIFT_SERVER": server.url, "GRAYLIFT_TOKEN": server.tokens[user], "GRAYLIFT_POLL": "0.2"}
    return subprocess.Popen(["sh", str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_the_ci_script_releases_waits_for_approval_and_promotion_and_fails_clearly(server: Server) -> None:
    first = pipeline(server, "dev", APP, "1.0.0", "test", "CI build 1")
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert "release #1:" in out and "succeeded" in out

    prod = pipeline(server, "dev", APP, "2.0.0", "prod", "CI build 2", "CHG-2")
    deadline = time.monotonic() + 30
    while not (waiting := server.client("appr").get("/api/v1/requests").json()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting[0]["ticket"] == "CHG-2" and waiting[0]["trigger"] == "api"
    rid = server.client("appr").post(f"/api/v1/requests/{waiting[0]['id']}/approve", json={}).json()["release_id"]
    server.wait_state(rid, ReleaseState.AWAITING_PROMOTION)
    server.client("rel").post(f"/api/v1/releases/{rid}/promote", json={})
    out, _ = prod.communicate(timeout=120)
    assert prod.returncode == 0, out
    assert "waits for approval" in out and "awaiting_promotion" in out and out.rstrip().endswith(
        "succeeded 8 host(s) on 2.0.0")

    refused = pipeline(server, "viewer", APP, "4.0.0", "test")
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert "graylift: viewer is viewer on demo (test); start needs developer" in out
