"""The HTTP API over real HTTP (uvicorn on 127.0.0.1) with a real store, on SQLite and PostgreSQL: who may do
what, approvals, freeze windows, the audit log, tokens, bad input, the live event stream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from graylift.core.state import ReleaseState
from tests.api.conftest import APP, PASSWORD, Server

S = ReleaseState


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def start(server: Server, user: str, env: str, version: str, **extra: Any) -> httpx.Response:
    return server.client(user).post("/api/v1/releases", json={"app": APP, "env": env, "version": version, **extra})


def audit(server: Server, **filters: str) -> list[dict[str, Any]]:
    return server.client("admin").get("/api/v1/audit", params=filters).json()["items"]  # type: ignore[no-any-return]


def test_no_token_is_401_and_every_route_checks(any_server: Server) -> None:
    server = any_server
    anonymous = server.client()
    for method, path in [("GET", "/api/v1/apps"), ("GET", "/api/v1/releases"), ("GET", "/api/v1/releases/1"),
                         ("GET", "/api/v1/releases/1/events"), ("GET", "/api/v1/audit"), ("GET", "/metrics"),
                         ("POST", "/api/v1/releases"), ("POST", "/api/v1/releases/1/promote")]:
        body = problem(anonymous.request(method, path, json={}), 401)
        assert body["error"] == "Unauthenticated"
    response = server.client().get("/api/v1/apps", headers={"Authorization": "Bearer glt_not-a-token"})
    assert problem(response, 401)["detail"] == "the API token is not valid"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert server.client().get("/healthz").json()["status"] == "ok"
    # the console's pages and its live stream too
    page = server.client().get("/releases/1", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert server.client().get("/releases/1/stream").status_code == 401


def test_wrong_role_is_403_names_the_role_needed_and_is_audited(server: Server) -> None:
    body = problem(start(server, "viewer", "test", "1.0.0"), 403)
    assert body["detail"] == "viewer is viewer on demo (test); start needs developer"
    assert problem(start(server, "other", "test", "1.0.0"), 403)["detail"].startswith("other has no role on demo")
    problem(server.client("dev").get("/api/v1/users"), 403)
    problem(server.client("dev").post("/api/v1/freezes", json={
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z", "reason": "x"}), 403)
    denied = audit(server, actor="viewer")
    assert denied[0]["outcome"] == "denied" and denied[0]["action"] == "start" and denied[0]["source"] == "127.0.0.1"
    # a viewer sees the app, an outsider does not
    assert [a["app"] for a in server.client("viewer").get("/api/v1/apps").json()] == [APP, APP]
    assert server.client("other").get("/api/v1/apps").json() == []


def test_a_release_without_approval_runs_to_the_end_driven_by_the_server(server: Server) -> None:
    response = start(server, "dev", "test", "1.0.0", reason="first", ticket="OPS-1")
    assert response.status_code == 201, response.text
    rid = response.json()["release"]["id"]
    final = server.wait_state(rid, S.SUCCEEDED)
    assert final["info"] == {"trigger": "api", "reason": "first", "ticket": "OPS-1", "request_id": None,
                             "override": None, "approvals": []}
    hosts = server.client("viewer").get(f"/api/v1/releases/{rid}/hosts").json()
    assert {h["state"] for h in hosts} == {"done"} and len(hosts) == 8
    journal = server.client("viewer").get(f"/api/v1/releases/{rid}/journal", params={"host": "h1"}).json()
    assert journal[0]["step"] == "precheck" and {e["host"] for e in journal} == {"h1"}
    log = server.client("viewer").get(f"/api/v1/releases/{rid}/log")
    assert "h1 health done" in log.text and log.headers["content-disposition"].endswith(f'release-{rid}.log"')
    env = server.client("viewer").get(f"/api/v1/apps/{APP}/envs/test").json()
    assert env["current_version"] == "1.0.0" and env["listed_versions"][0] in {"1.0.0", "2.0.0", "3.0.0", "4.0.0",
                                                                               "5.0.0"}
    assert {a["action"] for a in audit(server, actor="dev")} >= {"release"}


def test_production_needs_an_approval_by_someone_else(any_server: Server) -> None:
    server = any_server
    first = start(server, "dev", "test", "1.0.0")
    server.wait_state(first.json()["release"]["id"], S.SUCCEEDED)
    response = start(server, "dev", "prod", "2.0.0", reason="new checkout", ticket="CHG-7")
    assert response.status_code == 202, response.text
    req = response.json()["request"]
    assert req["state"] == "waiting" and req["approvals_needed"] == 1
    assert server.client("admin").get("/api/v1/releases", params={"env": "prod"}).json()["items"] == []
    # the requester cannot approve, nor can a releaser; nor can the same request be approved twice
    body = problem(server.client("dev").post(f"/api/v1/requests/{req['id']}/approve", json={}), 403)
    assert body["detail"] == "dev is developer on demo (prod); approve needs approver"
    problem(server.client("rel").post(f"/api/v1/requests/{req['id']}/approve", json={}), 403)
    # an approver who requested it themselves is refused too
    own = start(server, "appr", "prod", "2.0.0")
    assert own.status_code == 202
    self_approval = problem(server.client("appr").post(f"/api/v1/requests/{own.json()['request']['id']}/approve",
                                                       json={}), 403)
    assert "someone else must approve it" in self_approval["detail"]
    # approved by another: the release starts from the request's own fields, on behalf of the requester
    done = server.client("appr").post(f"/api/v1/requests/{req['id']}/approve", json={"comment": "ok for today"})
    assert done.status_code == 200 and done.json()["state"] == "started", done.text
    rid = done.json()["release_id"]
    waiting = server.wait_state(rid, S.AWAITING_PROMOTION)
    assert waiting["started_by"] == "dev" and waiting["version"] == "2.0.0"
    assert waiting["info"]["approvals"][0]["user"] == "appr" and waiting["info"]["ticket"] == "CHG-7"
    problem(server.client("appr").post(f"/api/v1/requests/{req['id']}/approve", json={}), 409)
    # promote is a releaser's; a developer may not
    problem(server.client("dev").post(f"/api/v1/releases/{rid}/promote", json={}), 403)
    assert server.client("rel").post(f"/api/v1/releases/{rid}/promote", json={}).status_code == 200
    server.wait_state(rid, S.SUCCEEDED)
    # a rollback (no approval by default: it is the way out), labelled as one
    back = server.client("rel").post(f"/api/v1/apps/{APP}/envs/prod/rollback", json={"reason": "errors up"})
    assert back.status_code == 201, back.text
    rollback = server.wait_state(back.json()["release"]["id"], S.SUCCEEDED)
    assert rollback["kind"] == "rollback" and rollback["version"] == "1.0.0"
    assert rollback["info"]["reason"] == "errors up"
    actions = [(e["actor"], e["action"], e["outcome"]) for e in audit(server, app=APP)]
    assert ("appr", "approve", "denied") in actions and ("appr", "approve", "ok") in actions
    assert ("dev", "request", "ok") in actions and ("rel", "promote", "ok") in actions
    assert ("rel", "rollback", "ok") in actions


def test_approvals_cannot_be_bypassed_by_a_rollback_to_a_version_that_never_went_live(server: Server) -> None:
    body = problem(server.client("rel").post(f"/api/v1/apps/{APP}/envs/prod/rollback", json={"to": "5.0.0"}), 409)
    assert "never went live in prod" in body["detail"]
    assert server.client("admin").get("/api/v1/releases").json()["items"] == []


def test_a_freeze_window_refuses_releases_unless_an_admin_overrides_with_a_reason(any_server: Server) -> None:
    server = any_server
    now = datetime.now(UTC)
    window = {"app": APP, "env": "test", "starts_at": (now - timedelta(minutes=1)).isoformat(),
              "ends_at": (now + timedelta(hours=1)).isoformat(), "reason": "sale weekend"}
    assert server.client("admin").post("/api/v1/freezes", json=window).status_code == 201
    body = problem(start(server, "dev", "test", "1.0.0"), 423)
    assert "frozen until" in body["detail"] and "sale weekend" in body["detail"]
    problem(start(server, "dev", "test", "1.0.0", override="hotfix"), 403)  # only an admin may override
    forced = start(server, "admin", "test", "1.0.0", override="hotfix for the sale")
    assert forced.status_code == 201, forced.text
    final = server.wait_state(forced.json()["release"]["id"], S.SUCCEEDED)
    assert final["info"]["override"] == "hotfix for the sale"
    assert audit(server, actor="dev")[0]["outcome"] == "refused"


def test_tokens_are_stored_hashed_shown_once_and_revocable(any_server: Server) -> None:
    server = any_server
    created = server.client("dev").post("/api/v1/tokens", json={"name": "ci", "days": 30})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("glt_") and len(token) > 40
    listed = server.client("dev").get("/api/v1/tokens").json()
    assert all("token" not in t for t in listed) and {t["name"] for t in listed} == {"test", "ci"}
    with server.gl.store._read_engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_tokens"))])
    assert token not in dump and token[4:] not in dump
    ci = server.client()
    ci.headers["Authorization"] = f"Bearer {token}"
    assert ci.get("/api/v1/me").json()["via"] == "token:ci"
    assert server.client("dev").get("/api/v1/tokens").json()[1]["last_used_at"] is not None
    problem(server.client("viewer").delete(f"/api/v1/tokens/{created.json()['id']}"), 403)
    assert server.client("dev").delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 200
    assert "revoked" in problem(ci.get("/api/v1/me"), 401)["detail"]


def test_bad_input_gets_one_clear_problem_never_a_traceback(server: Server) -> None:
    dev = server.client("dev")
    body = problem(dev.post("/api/v1/releases", content=b"{not json", headers={"content-type": "application/json"}),
                   422)
    assert body["error"] == "InputError"
    assert "version" in problem(dev.post("/api/v1/releases", json={"app": APP, "env": "test"}), 422)["detail"]
    assert problem(dev.post("/api/v1/releases", json={"app": APP, "env": "test", "version": "1; rm -rf /"}), 422)
    unknown = problem(server.client("admin").post("/api/v1/releases", json={"app": "nope", "env": "test",
                                                                            "version": "1.0.0"}), 422)
    assert "unknown app 'nope'" in unknown["detail"]
    missing = problem(dev.get("/api/v1/releases/99999"), 404)
    assert missing["detail"].startswith("release #99999 not found")
    problem(dev.post("/api/v1/releases/1/launch", json={}), 422)
    problem(dev.get("/api/v1/nothing-here"), 404)
    preflight = problem(start(server, "dev", "test", "9.9.9"), 422)
    assert preflight["error"] == "PreflightFailed" and any("9.9.9" in p for p in preflight["problems"])


def test_requests_on_a_release_follow_the_state_table(server: Server) -> None:
    rid = start(server, "dev", "test", "1.0.0").json()["release"]["id"]
    server.wait_state(rid, S.SUCCEEDED)
    body = problem(server.client("rel").post(f"/api/v1/releases/{rid}/promote", json={}), 409)
    assert body["detail"] == f"release #{rid} already succeeded; nothing to promote"


def test_the_event_stream_resumes_from_the_last_event_id(server: Server) -> None:
    rid = start(server, "dev", "test", "1.0.0").json()["release"]["id"]
    server.wait_state(rid, S.SUCCEEDED)

    def events(**headers: str) -> list[tuple[str, str, str]]:
        found, current = [], {}
        with server.client("viewer").stream("GET", f"/api/v1/releases/{rid}/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line:
                    if "event" in current:
                        found.append((current.get("id", ""), current["event"], current.get("data", "")))
                    current = {}
                    continue
                key, _, value = line.partition(": ")
                current[key] = value
        return found

    everything = events()
    journal = [e for e in everything if e[1] == "journal"]
    assert everything[0][1] == "release" and everything[-1][1] == "end" and len(journal) > 50
    middle = journal[len(journal) // 2][0]
    resumed = [e for e in events(**{"Last-Event-ID": middle}) if e[1] == "journal"]
    assert [e[0] for e in resumed] == [e[0] for e in journal if int(e[0]) > int(middle)]


def test_a_console_session_needs_its_csrf_token_on_every_unsafe_request(server: Server) -> None:
    browser = server.client(follow_redirects=False)
    form = browser.get("/login")
    token = form.cookies.get("graylift_login_csrf") or browser.cookies.get("graylift_login_csrf")
    assert problem_free(browser.post("/login", data={"name": "dev", "password": "wrong password!",
                                                     "csrf_token": token}), 401)
    token = browser.cookies.get("graylift_login_csrf")
    assert browser.post("/login", data={"name": "dev", "password": PASSWORD, "csrf_token": "forged"}).status_code == 400
    ok = browser.post("/login", data={"name": "dev", "password": PASSWORD, "csrf_token": token})
    assert ok.status_code == 303 and "graylift_session" in browser.cookies
    assert browser.get("/api/v1/me").json()["via"] == "session"
    body = problem(browser.post("/api/v1/releases", json={"app": APP, "env": "test", "version": "1.0.0"}), 401)
    assert "CSRF" in body["detail"]
    page = browser.get("/new").text
    csrf = page.split('"X-CSRF-Token": "')[1].split('"')[0]
    started = browser.post("/api/v1/releases", json={"app": APP, "env": "test", "version": "1.0.0"},
                           headers={"X-CSRF-Token": csrf})
    assert started.status_code == 201
    assert server.wait_state(started.json()["release"]["id"], S.SUCCEEDED)["info"]["trigger"] == "console"
    assert audit(server, actor="dev", action="login")[0]["outcome"] == "ok"


def test_failed_logins_are_throttled(server: Server) -> None:
    browser = server.client(follow_redirects=False)

    def attempt(password: str) -> httpx.Response:
        browser.get("/login")
        return browser.post("/login", data={"name": "admin", "password": password,
                                            "csrf_token": browser.cookies.get("graylift_login_csrf")})

    for _ in range(5):
        assert "wrong user name or password" in attempt("guess").text
    refused = attempt(PASSWORD)  # even the right password, for a while
    assert refused.status_code == 401 and "too many failed logins for admin" in refused.text
    assert len(audit(server, actor="admin", action="login")) == 5


def problem_free(response: httpx.Response, status: int) -> bool:
    return response.status_code == status and "Traceback" not in response.text


def test_pages_of_releases_and_filters(server: Server) -> None:
    ids = []
    for version in ("1.0.0", "2.0.0"):
        rid = start(server, "dev", "test", version).json()["release"]["id"]
        server.wait_state(rid, S.SUCCEEDED)
        ids.append(rid)
    admin = server.client("admin")
    first = admin.get("/api/v1/releases", params={"limit": 1}).json()
    assert [r["id"] for r in first["items"]] == [ids[1]] and first["next_before"] == ids[1]
    rest = admin.get("/api/v1/releases", params={"limit": 1, "before": first["next_before"]}).json()
    assert [r["id"] for r in rest["items"]] == [ids[0]] and rest["next_before"] == ids[0]
    last = admin.get("/api/v1/releases", params={"limit": 1, "before": ids[0]}).json()
    assert last == {"items": [], "next_before": None}
    assert admin.get("/api/v1/releases", params={"env": "prod"}).json()["items"] == []
    assert len(admin.get("/api/v1/releases", params={"state": "succeeded", "app": APP}).json()["items"]) == 2


def test_metrics_need_a_view_of_everything(server: Server) -> None:
    rid = start(server, "dev", "test", "1.0.0").json()["release"]["id"]
    server.wait_state(rid, S.SUCCEEDED)
    problem(server.client("dev").get("/metrics"), 403)
    text = server.client("admin").get("/metrics").text
    assert 'graylift_releases{kind="release",state="succeeded"} 1.0' in text
    assert 'graylift_queue_depth{what="requests_waiting_for_approval"} 0.0' in text
    deadline = time.monotonic() + 5
    while 'graylift_host_step_seconds_count{step="health"} 8.0' not in text and time.monotonic() < deadline:
        time.sleep(0.2)
        text = server.client("admin").get("/metrics").text
    assert 'graylift_host_step_seconds_count{step="health"} 8.0' in text


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_share_releases(start_server: Any, pg_databases: Any) -> None:
    url = pg_databases.create()
    a = start_server(url, workers=False)  # a takes requests only; b drives
    b = start_server(url)
    rid = start(a, "dev", "test", "1.0.0").json()["release"]["id"]
    assert b.wait_state(rid, S.SUCCEEDED)["id"] == rid
    response = start(b, "dev", "prod", "2.0.0")
    req = response.json()["request"]
    approved = a.client("appr").post(f"/api/v1/requests/{req['id']}/approve", json={})
    rid = approved.json()["release_id"]
    assert b.wait_state(rid, S.AWAITING_PROMOTION)["state"] == a.wait_state(rid, S.AWAITING_PROMOTION)["state"]
    assert a.client("rel").post(f"/api/v1/releases/{rid}/promote", json={}).status_code == 200
    a.wait_state(rid, S.SUCCEEDED)
    deadline = time.monotonic() + 10  # the driver lets the lease go just after the release is finished
    while a.client("admin").get(f"/api/v1/releases/{rid}").json()["controller"] is not None:
        assert time.monotonic() < deadline, "the controller kept the lease of a finished release"
        time.sleep(0.05)
    assert {e["actor"] for e in audit(b, app=APP)} >= {"dev", "appr", "rel"}


def test_serve_refuses_to_run_without_auth_on_another_address(tmp_path: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "graylift", "serve", "--host", "0.0.0.0", "--no-auth"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "refusing to serve without authentication on 0.0.0.0" in done.stderr
