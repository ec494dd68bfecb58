"""The console in a real browser (headless Debian chromium, Playwright): log in, plan and request a release,
approve it as someone else, watch the host grid and the header change live without a reload, promote the
canary, roll back; screenshots kept under the test's tmp dir (``screenshots/``).

Once over folder hosts and fakes (quick), once on the lab (real sshd hosts, HAProxy, ZooKeeper, ...).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from graylift.auth import ANY, Desk, Grant, Role, local_actor
from graylift.core.state import ReleaseState
from tests.api.conftest import APP, PASSWORD, Running, Server
from tests.web.conftest import Shots

pytestmark = pytest.mark.slow
TIMEOUT = 30_000  # ms


def log_in(browser: Any, url: str, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{url}/")
    assert "/login" in page.url
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def console_flow(browser: Any, url: str, shots: Shots, app: str, env: str, current: str, new: str) -> int:
    """The whole flow; returns the rollback release's id."""
    dev = log_in(browser, url, "dev")
    assert dev.locator("#overview").inner_text().count(app) >= 1
    shots(dev, "overview")
    dev.goto(f"{url}/new?app={app}&env={env}")
    dev.select_option("#appenv", f"{app}|{env}")
    dev.fill("#version", new)
    dev.click("#plan-button")
    dev.wait_for_selector("#plan-result")
    plan = dev.locator("#plan-result").inner_text()
    assert f"{current} → {new}" in plan and "canary" in plan
    shots(dev, "plan-and-preflight")
    dev.fill("input[name=reason]", "checkout fix")
    dev.click("#start-button")
    dev.wait_for_url(f"{url}/approvals")
    assert "waiting for 1 approval" in dev.locator("#flash").inner_text()
    assert "someone else must approve" in dev.locator("#waiting").inner_text()

    approver = log_in(browser, url, "appr")
    approver.goto(f"{url}/approvals")
    shots(approver, "approvals")
    approver.fill("#waiting input[name=comment]", "go")
    approver.click("#waiting button.approve")
    approver.wait_for_url(re.compile(rf"{url}/releases/\d+$"))
    release_id = int(approver.url.rsplit("/", 1)[1])
    approver.evaluate("window.__noReload = true")
    # the header and the grid change by themselves, over the event stream
    approver.wait_for_selector("#release-state:has-text('awaiting_promotion')")
    assert approver.locator("#grid tr[data-state=done]").count() == 1
    assert approver.locator("#release-header").inner_text().count("appr (approve") == 1
    shots(approver, "canary-waits-for-promotion")
    approver.click("button[data-action=promote]")
    dialog = approver.wait_for_selector(".modal")
    assert "Promote the canary" in dialog.inner_text() and "at most" in dialog.inner_text()
    approver.click("#confirm")
    approver.wait_for_selector("#release-state:has-text('succeeded')")
    total = approver.locator("#grid tbody tr").count()
    assert approver.locator("#grid tr[data-state=done]").count() == total > 1
    assert approver.evaluate("window.__noReload") is True
    assert "release succeeded" in approver.locator("#log").inner_text()
    shots(approver, "succeeded")

    approver.goto(f"{url}/apps/{app}")
    approver.click(f"button[hx-get='/apps/{app}/envs/{env}/confirm-rollback']")
    dialog = approver.wait_for_selector(".modal")
    text = dialog.inner_text()
    assert f"Roll back {app} in {env} to {current}?" in text and "Reason (required)" in text
    shots(approver, "rollback-confirmation")
    approver.fill(".modal input[name=reason]", "errors up after the release")
    approver.click("#confirm")
    approver.wait_for_url(re.compile(rf"{url}/releases/\d+$"))
    rollback_id = int(approver.url.rsplit("/", 1)[1])
    assert rollback_id != release_id
    approver.wait_for_selector("#release-state:has-text('succeeded')")
    assert "rollback" in approver.locator("#release-header .tag").first.inner_text()
    shots(approver, "rolled-back")
    approver.goto(f"{url}/audit")
    assert "approve" in approver.locator("#audit").inner_text()
    shots(approver, "audit")
    approver.context.close()
    dev.context.close()
    return rollback_id


def test_the_console_over_folder_hosts(browser: Any, start_server: Callable[..., Server], tmp_path: Path,
                                       shots: Shots) -> None:
    server = start_server(f"sqlite:///{tmp_path}/state.db")
    admin, appr = server.client("admin"), server.client("appr")
    req = admin.post("/api/v1/releases", json={"app": APP, "env": "prod", "version": "1.0.0"}).json()["request"]
    rid = appr.post(f"/api/v1/requests/{req['id']}/approve", json={}).json()["release_id"]
    server.wait_state(rid, ReleaseState.AWAITING_PROMOTION)
    appr.post(f"/api/v1/releases/{rid}/promote", json={})
    server.wait_state(rid, ReleaseState.SUCCEEDED)
    rollback_id = console_flow(browser, server.url, shots, APP, "prod", "1.0.0", "2.0.0")
    assert server.wait_state(rollback_id, ReleaseState.SUCCEEDED)["version"] == "1.0.0"
    assert {server.world.current(h.name) for h in server.world.hosts} == {"1.0.0"}
    assert len(shots.taken) == 8 and all(p.stat().st_size > 5000 for p in shots.taken)


def test_a_phone_sees_the_release_page(browser: Any, start_server: Callable[..., Server], tmp_path: Path,
                                       shots: Shots) -> None:
    server = start_server(f"sqlite:///{tmp_path}/state.db")
    rid = server.client("dev").post("/api/v1/releases", json={"app": APP, "env": "test", "version": "1.0.0"}
                                    ).json()["release"]["id"]
    server.wait_state(rid, ReleaseState.SUCCEEDED)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{server.url}/login")
    page.fill("input[name=name]", "dev")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server.url}/releases/{rid}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide on a 390px phone"
    assert page.locator("#grid td[data-label=State]").first.is_visible()
    shots(page, "phone-release")
    context.close()


# ---------------------------------------------------------------------------------------------- on the lab
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from graylift.lab import lab_down, lab_up

    root = tmp_path_factory.mktemp("lab-console")
    in_thread(lambda: lab_down("console", state_root=root))
    info = in_thread(lambda: lab_up("console", hosts=4, apps=("pyapp",), state_root=root))
    yield info
    in_thread(lambda: lab_down("console", state_root=root))


def in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` on its own thread: Playwright's sync API keeps an event loop running on this one, so
    anything that calls asyncio.run (the lab, a release driven here) must run elsewhere."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


@pytest.mark.lab
@pytest.mark.root
def test_the_console_on_the_lab(browser: Any, lab: Any, tmp_path: Path, shots: Shots) -> None:
    from graylift.api.app import create_app
    from tests.api.conftest import fast_settings
    from tests.e2e.conftest import make_deploy

    def deploy_with(promote: str) -> Any:
        return make_deploy(lab, "pyapp", tmp_path / "deploy", quiet_period=0.2, batch={"size": 1},
                           canary={"group": "beta", "count": 1, "bake": 1, "promote": promote})

    installer = deploy_with("auto")
    first = in_thread(lambda: installer.release("1.0.0"))  # the fleet's first version, as the CLI installs it
    assert first.state is ReleaseState.SUCCEEDED, first.message
    installer.gl.close()
    deploy = deploy_with("manual")  # the same state database; prod's canary now waits for a person
    gl = deploy.gl
    desk = Desk(gl)
    me = local_actor("test")
    for name, role in (("dev", Role.DEVELOPER), ("appr", Role.APPROVER)):
        desk.create_user(me, name, PASSWORD, [Grant("pyapp", ANY, role)])
    running = Running(create_app(gl, fast_settings(pool_interval=0.3)))
    try:
        rollback_id = console_flow(browser, running.url, shots, "pyapp", "prod", "1.0.0", "2.0.0")
        deadline = time.monotonic() + 60
        while gl.release(rollback_id).state is not ReleaseState.SUCCEEDED and time.monotonic() < deadline:
            time.sleep(0.5)
        assert set(in_thread(deploy.versions).values()) == {"1.0.0"}
        in_thread(deploy.assert_fleet_clean)
    finally:
        running.stop()
        gl.close()
