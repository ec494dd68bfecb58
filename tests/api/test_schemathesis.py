"""schemathesis against the live server's /openapi.json: requests made from the document (valid and not) to
every operation, as an admin; no answer is a 5xx, and every error is problem+json without a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from graylift.api.app import create_app
from graylift.auth import Desk
from graylift.core.model import Strategy
from graylift.runtime import AppRuntime
from graylift.testing import FakeFleet, FakeRepository, FakeSilencer, FakeSwitch
from tests.api.conftest import APP, CONFIG, DEPLOY, Running, add_users, fast_settings
from tests.engine.conftest import VERSIONS, hosts_of, package_bytes

pytestmark = pytest.mark.slow
EXAMPLES = 20  # per operation


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from graylift.adapters.health import CommandProbe
    from graylift.config import render_command
    from graylift.service import Graylift

    root = tmp_path_factory.mktemp("schemathesis")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    for version, healthy in VERSIONS.items():
        (artifacts / f"{APP}-{version}.tar.gz").write_bytes(package_bytes(version, healthy))
    runtime = AppRuntime(app=APP, env="test", deploy_dir=DEPLOY, keep_releases=3,
                         start_command="cat {current}/VERSION > {deploy_dir}/running",
                         stop_command="rm -f {deploy_dir}/running", command_timeout=10, drain_command=None,
                         probes=[CommandProbe(f"test -s {DEPLOY}/running")], health_retries=2, health_interval=0.01,
                         switches=[FakeSwitch()], silencers=[FakeSilencer()], silence_seconds=600, quiet_period=0.0,
                         strategy=Strategy(canary_group="beta", batch_size=2), render=render_command)
    (root / "hosts").mkdir()
    fleet = FakeFleet(runtime, root / "hosts", FakeRepository(artifacts))
    (root / "known_hosts").write_text("")
    db = f"sqlite:///{root}/state.db"
    config = root / "graylift.yaml"
    config.write_text(CONFIG.format(db=db, root=root, app=APP, artifacts=artifacts, deploy=DEPLOY))
    gl = Graylift(config, db_url=db, fleet=lambda *args: fleet)
    gl.store.replace_hosts(APP, "test", hosts_of(6))
    app = create_app(gl, fast_settings())
    desk: Desk = app.state.desk
    tokens = add_users(desk)
    running = Running(app)
    yield running.url, tokens["admin"]
    running.stop()
    gl.close()


def test_no_request_gets_a_server_error(live: tuple[str, str]) -> None:
    url, token = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    seen: dict[str, int] = {}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def one(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                content_type = response.headers.get("content-type") or [""]
                assert content_type[0].startswith("application/problem+json"), f"{where}: {content_type}"
                assert "Traceback" not in response.text
            seen[where] = response.status_code

        one()
    assert len(seen) > 100  # it did ask (many distinct requests)


def test_the_document_is_served(live: tuple[str, str]) -> None:
    import httpx

    document = httpx.get(f"{live[0]}/openapi.json", trust_env=False).json()
    assert document["info"]["title"] == "graylift"
    assert "/api/v1/releases" in document["paths"] and "/api/v1/releases/{release_id}/events" in document["paths"]
    assert not any(p.startswith(("/login", "/releases")) for p in document["paths"])  # the console is not API
