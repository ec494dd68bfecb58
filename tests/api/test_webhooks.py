"""Webhooks against a local receiver: signed deliveries of release events, retries with backoff, a dead
receiver given up on and shown, a hanging receiver that never slows a release; each channel's signing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from graylift.core.state import ReleaseState
from graylift.notify.channels import render, text_of, verify_generic
from graylift.notify.notifier import Notifier
from graylift.store import Store
from graylift.store.accounts import AccountStore
from tests.api.conftest import APP, Server
from tests.fakes.trickle import Trickle

SECRET = "s3cret-signing-key"


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; ``fail`` first answers 500, ``hang`` seconds."""

    fail: int = 0
    hang: float = 0.0
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?access_token=robot-token"

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, _, body in self.got if body]


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        rec = Receiver(**kwargs)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                rec.got.append((self.path, dict(self.headers), body))
                rec.times.append(time.monotonic())
                if rec.hang:
                    time.sleep(rec.hang)
                status = 500 if len(rec.got) <= rec.fail else 200
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"errcode": 0}')

            def log_message(self, *args: Any) -> None:
                return None

        rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        rec.server.daemon_threads = True
        threading.Thread(target=rec.server.serve_forever, daemon=True).start()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        assert rec.server is not None
        rec.server.shutdown()
        rec.server.server_close()


def add_hook(server: Server, url: str, **extra: Any) -> dict[str, Any]:
    body = {"name": extra.pop("name", "ops"), "channel": "generic", "url": url, "secret": SECRET} | extra
    response = server.client("admin").post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def deliveries(server: Server, hook_id: int) -> list[dict[str, Any]]:
    return server.client("admin").get(f"/api/v1/webhooks/{hook_id}/deliveries").json()  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def release(server: Server, env: str = "test", version: str = "1.0.0") -> int:
    response = server.client("dev").post("/api/v1/releases", json={"app": APP, "env": env, "version": version})
    assert response.status_code == 201, response.text
    return int(response.json()["release"]["id"])


def test_release_events_are_delivered_signed_and_the_url_is_never_shown(server: Server,
                                                                       receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    hook = add_hook(server, rec.url)
    assert hook["url"].endswith("/hook?***") and "robot-token" not in json.dumps(hook) and hook["has_secret"]
    rid = release(server)
    server.wait_state(rid, ReleaseState.SUCCEEDED)
    wait_for(lambda: "succeeded" in rec.events())
    assert rec.events() == ["started", "canary_baking", "succeeded"]
    path, headers, body = rec.got[-1]
    assert path == "/hook?access_token=robot-token"
    assert verify_generic(SECRET, headers["X-Graylift-Timestamp"], body, headers["X-Graylift-Signature"])
    assert not verify_generic("another-secret", headers["X-Graylift-Timestamp"], body, headers["X-Graylift-Signature"])
    payload = json.loads(body)
    assert payload["release_id"] == rid and payload["app"] == APP and payload["url"].endswith(f"/releases/{rid}")
    assert payload["text"].startswith("graylift: release succeeded: demo (none) -> 1.0.0 (test)")
    assert {d["state"] for d in deliveries(server, hook["id"])} == {"sent"}
    audit = server.client("admin").get("/api/v1/audit", params={"action": "webhook_add"}).json()["items"]
    assert "robot-token" not in json.dumps(audit)


def test_approvers_are_notified_of_a_request(server: Server, receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    add_hook(server, rec.url, events=["approval_requested"])
    server.client("dev").post("/api/v1/releases", json={"app": APP, "env": "prod", "version": "1.0.0",
                                                        "reason": "launch"})
    wait_for(lambda: bool(rec.got))
    payload = json.loads(rec.got[0][2])
    assert payload["event"] == "approval_requested" and payload["by"] == "dev"
    assert payload["approvers"] == ["admin", "appr", "appr2"]  # who may approve it: never the requester
    assert "approvers: admin, appr, appr2" in payload["text"]


def test_a_failing_receiver_is_retried_with_backoff_and_a_dead_one_given_up_and_shown(
        server: Server, receiver: Callable[..., Receiver]) -> None:
    flaky = receiver(fail=2)
    good = add_hook(server, flaky.url, name="flaky", events=["started"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()  # nothing listens there
    dead = add_hook(server, dead_url, name="dead", events=["started"])
    rid = release(server)
    server.wait_state(rid, ReleaseState.SUCCEEDED)
    wait_for(lambda: [d["state"] for d in deliveries(server, good["id"])] == ["sent"])
    sent = deliveries(server, good["id"])[0]
    assert sent["attempts"] == 3 and len(flaky.got) == 3
    assert sent["payload"]["event"] == "started" and sent["payload"]["release_id"] == rid  # what it sent
    first, second, third = flaky.times
    assert second - first >= 0.2 and third - second >= 0.4  # backoff 0.2s, then doubled
    wait_for(lambda: [d["state"] for d in deliveries(server, dead["id"])] == ["dead"])
    gone = deliveries(server, dead["id"])[0]
    assert gone["attempts"] == 3 and "ConnectError" in gone["last_error"]
    assert str(dead_url) not in gone["last_error"]
    page = server.client("admin").get("/webhooks").text
    assert "dead" in page and "ConnectError" in page
    metrics = server.client("admin").get("/metrics").text
    assert 'graylift_queue_depth{what="webhook_deliveries_dead"} 1.0' in metrics


def test_a_hanging_receiver_never_slows_a_release(server: Server, receiver: Callable[..., Receiver]) -> None:
    quick = release(server)
    started = time.monotonic()
    server.wait_state(quick, ReleaseState.SUCCEEDED)
    alone = time.monotonic() - started
    slow = receiver(hang=4.0)
    add_hook(server, slow.url)
    rid = release(server, version="2.0.0")
    started = time.monotonic()
    server.wait_state(rid, ReleaseState.SUCCEEDED)
    took = time.monotonic() - started
    assert took < alone + 2.0, f"the release took {took:.1f}s with a hanging webhook, {alone:.1f}s without"
    wait_for(lambda: len(slow.got) >= 1)


def test_one_webhook_gets_its_events_one_at_a_time_in_the_order_they_happened(
        tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    """Events queued together (a release's "started" and "canary_baking" seen in one scan) reach a receiver in
    the order they happened, each after the one before it was answered, even when the receiver is slow."""
    slow = receiver(hang=0.3)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        accounts = AccountStore.of(store)
        hook = accounts.add_webhook(name="ops", channel="generic", url=slow.url, secret=None, app="*", env="*",
                                    events=[], template=None, created_by="admin")
        events = ["started", "canary_baking", "batch_done", "succeeded"]
        for n, event in enumerate(events):
            accounts.enqueue(hook.id, event_key=f"journal:{n}", event=event, release_id=1, payload={"event": event})
        notifier = Notifier(store)

        async def deliver() -> int:
            async with httpx.AsyncClient() as client:
                return await notifier.deliver(client)

        assert asyncio.run(deliver()) == len(events)
    finally:
        store.close()
    assert slow.events() == events
    gaps = [b - a for a, b in zip(slow.times, slow.times[1:], strict=False)]
    assert min(gaps) >= 0.25, f"a delivery was sent before the one before it was answered: {gaps}"



def test_a_receiver_that_never_finishes_its_answer_is_given_up_at_the_timeout_and_holds_no_other(
        tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    """httpx's timeout bounds each read, not the request: a receiver (or a proxy) sending a header line now and
    then held the notifier's pass, and so every other webhook's deliveries, without end. A delivery has the
    notifier's timeout in all; it fails (retried later) and the pass goes on."""
    good = receiver()
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        accounts = AccountStore.of(store)

        async def deliver() -> tuple[int, float]:
            async with Trickle() as slow, httpx.AsyncClient() as client:
                for name, url in (("stuck", slow.url + "/hook"), ("ok", good.url)):
                    hook = accounts.add_webhook(name=name, channel="generic", url=url, secret=None, app="*",
                                                env="*", events=[], template=None, created_by="admin")
                    accounts.enqueue(hook.id, event_key="journal:1", event="started", release_id=1,
                                     payload={"event": "started"})
                loop = asyncio.get_running_loop()
                started = loop.time()
                sent = await asyncio.wait_for(Notifier(store, timeout=1).deliver(client), 10)  # guards the old
                return sent, loop.time() - started

        sent, took = asyncio.run(deliver())
        failed = [d for d in accounts.deliveries() if d.state != "sent"]
    finally:
        store.close()
    assert sent == 1 and good.events() == ["started"] and took < 5
    assert len(failed) == 1 and "no complete answer in 2s" in (failed[0].last_error or "")

def test_each_channel_signs_as_its_documentation_says() -> None:
    payload = {"event": "succeeded", "app": "pyapp", "env": "prod", "version": "2.0.0", "from_version": "1.0.0",
               "release_id": 7, "by": "ann", "message": "10 host(s) on 2.0.0", "url": "http://gl/releases/7"}
    ding = render("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=T", SECRET, None, payload,
                  1700000000000)
    query = parse_qs(urlsplit(ding.url).query)
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"1700000000000\n{SECRET}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["timestamp"] == ["1700000000000"] and query["sign"] == [expected]
    assert json.loads(ding.body)["msgtype"] == "markdown"
    feishu = json.loads(render("feishu", "https://open.feishu.cn/x", SECRET, None, payload, 1700000000000).body)
    assert feishu["timestamp"] == "1700000000"
    assert feishu["sign"] == base64.b64encode(hmac.new(f"1700000000\n{SECRET}".encode(), b"",
                                                       hashlib.sha256).digest()).decode()
    wecom = json.loads(render("wecom", "https://qyapi.weixin.qq.com/x?key=K", None, None, payload, 0).body)
    assert wecom["markdown"]["content"].startswith("graylift: release succeeded: pyapp 1.0.0 -> 2.0.0 (prod)")
    slack = json.loads(render("slack", "https://hooks.slack.com/services/X", None, "$app is on $version ($env)",
                              payload, 0).body)
    assert slack == {"text": "pyapp is on 2.0.0 (prod)"}
    # a template cannot reach into objects: placeholders are plain names, unknown ones stay as they are
    assert text_of(payload, "${app.__class__} $nothing $app") == "${app.__class__} $nothing pyapp"
