"""The one HTTP helper (graylift.adapters._http): how httpx's errors and a server's refusals become messages."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from graylift.adapters._http import Api, Login, call, detail, shown, translated
from graylift.errors import ArtifactError, TrafficError
from graylift.lab import services
from tests.fakes.base import FakeServer, Request, Response
from tests.fakes.trickle import Trickle

SECRET = "Tok-Secret-3"


@dataclass
class Routes(FakeServer):
    """Answers each path with a fixed response; echoes the request's query in a 500."""

    routes: dict[str, Response] = field(default_factory=dict)

    def handle(self, request: Request) -> Response:
        return self.routes.get(request.path, Response(500, f"boom query={request.query}", "text/plain"))


@pytest.fixture
def server() -> Iterator[Routes]:
    fake = Routes(routes={
        "/ok": Response(200, {"a": 1}), "/empty": Response(204, b""), "/text": Response(200, "<html>", "text/html"),
        "/gone": Response(404, "no such thing", "text/plain"),
        "/denied": Response(403, {"detail": "Invalid token " + SECRET}),
        "/plus": Response(404, {"error": {"status": 404, "text": "upstream not found", "code": "UpstreamNotFound"}}),
    })
    fake.start()
    yield fake
    fake.stop()


async def get(url: str, **kwargs: object) -> tuple[int, object]:
    return await call(TrafficError, "lb:web", "GET", url, hint="is it running?", timeout=5, secrets=[SECRET],
                      **kwargs)  # type: ignore[arg-type]


async def test_answers(server: Routes) -> None:
    assert await get(server.url + "/ok") == (200, {"a": 1})
    assert await get(server.url + "/empty") == (204, None)
    assert await get(server.url + "/text", expect_json=False) == (200, "<html>")
    assert await get(server.url + "/gone", ok_statuses=(404,)) == (404, "no such thing")
    async with httpx.AsyncClient(headers={"X-Kept": "1"}) as client:  # the caller's own client is used
        assert await get(server.url + "/ok", client=client) == (200, {"a": 1})
    assert server.requests[-1].headers["x-kept"] == "1"


@pytest.mark.parametrize(("path", "kwargs", "message"), [
    ("/gone", {}, "lb:web: GET /gone returned HTTP 404: no such thing; is it running?"),
    ("/gone", {"status_hints": {404: "check the name"}}, "lb:web: GET /gone returned HTTP 404: no such thing; "
                                                         "check the name"),
    ("/denied", {}, "lb:web: GET /denied was refused with HTTP 403 (Invalid token ***); check the "
                    "credentials/token and their permissions"),
    ("/denied", {"auth_hint": "check $TOKEN"}, "lb:web: GET /denied was refused with HTTP 403 (Invalid token ***); "
                                               "check $TOKEN"),
    ("/plus", {}, "lb:web: GET /plus returned HTTP 404: UpstreamNotFound: upstream not found; is it running?"),
    ("/text", {}, "lb:web: GET /text returned non-JSON: '<html>'; is it running?"),
    ("/other?page=2", {}, "lb:web: GET /other returned HTTP 500: boom query={'page': '2'}; is it running?"),
    ("/other?page=2", {"show_query": True}, "lb:web: GET /other?page=2 returned HTTP 500: boom query={'page': '2'}; "
                                            "is it running?"),
])
async def test_refusals(server: Routes, path: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TrafficError) as caught:
        await get(server.url + path, **kwargs)
    assert str(caught.value) == message


async def test_unreachable_and_invalid() -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{services.free_port()}/api?token={SECRET}"
    with pytest.raises(TrafficError) as caught:
        await get(url)
    assert str(caught.value).startswith("lb:web: GET /api failed: ConnectError")
    assert str(caught.value).endswith("; is it running?") and SECRET not in str(caught.value)
    with pytest.raises(TrafficError, match=r"^lb:web: <invalid URL> is not a valid URL; fix it in the config$"):
        await get("http://[::1/x")


async def test_translated_maps_only_httpx_errors() -> None:
    url = f"http://127.0.0.1:{services.free_port()}/pkg.tar.gz"
    failed = r"^app 1: HEAD /pkg.tar.gz failed: ConnectError .*; check the network$"
    with pytest.raises(ArtifactError, match=failed), translated(ArtifactError, "app 1", "HEAD", url,
                                                                hint="check the network"):
        async with httpx.AsyncClient() as client:
            await client.head(url)
    with pytest.raises(KeyError), translated(ArtifactError, "app 1", "GET", url, hint="-"):
        raise KeyError("not httpx's")


@pytest.mark.parametrize(("body", "expected"), [
    ('{"error": {"code": "UpstreamNotFound", "text": "upstream not found"}}', "UpstreamNotFound: upstream not found"),
    ('{"error": "etcdserver: user name is empty", "code": 2, "message": "etcdserver: user name is empty"}',
     "etcdserver: user name is empty"),
    ('{"detail": "Invalid token"}', "Invalid token"),
    ('{"tag": ["billing is not one of the available choices."]}',
     '{"tag": ["billing is not one of the available choices."]}'),
    ("  two\n  lines  ", "two lines"),
    ("", "(empty body)"),
])
def test_detail(body: str, expected: str) -> None:
    assert detail(httpx.Response(400, text=body)) == expected


def test_shown() -> None:
    assert shown("http://u:p@h:1/a/b?token=x") == "/a/b"
    assert shown("http://h/a?limit=10&offset=20", show_query=True) == "/a?limit=10&offset=20"


@dataclass
class Guarded(FakeServer):
    """A server with a login: ``POST /login`` hands out t1, t2, ...; ``/data`` wants a token in ``valid``."""

    logins: int = 0
    valid: set[str] = field(default_factory=set)
    grant: bool = True  # False: the tokens it hands out are refused at once

    def handle(self, request: Request) -> Response:
        if request.path == "/login":
            self.logins += 1
            if self.grant:
                self.valid.add(f"t{self.logins}")
            return Response(200, {"token": f"t{self.logins}"} if request.json() == {"password": "pw-1234"} else {})
        if request.headers.get("x-token") in self.valid:
            return Response(200, {"data": request.headers["x-token"]})
        return Response(401, "unknown token", "text/plain")


async def test_api_login_is_shared_and_renewed_once_when_refused() -> None:
    server = Guarded()
    server.start()
    try:
        api = Api(TrafficError, "reg:x", server.url + "/", timeout=5, hint="is it up at {where}?")
        assert (api.url, api.where, api.hint) == (server.url, server.url, f"is it up at {server.url}?")
        api.login = Login(api, "/login", user="app", password="pw-1234", key="token", json={"password": "pw-1234"})

        async def data() -> tuple[int, object]:
            return await api.call_logged_in("GET", "/data", refusal=401,
                                            with_token=lambda token: {"headers": {"X-Token": token}})

        assert await asyncio.gather(*(data() for _ in range(5))) == [(200, {"data": "t1"})] * 5
        assert server.logins == 1  # one login for five parallel calls
        server.valid.clear()  # the token expired on the server
        assert await data() == (200, {"data": "t2"}) and server.logins == 2
        server.valid.clear()
        server.grant = False  # refused even with a fresh token: the refusal is the answer
        status, answer = await data()
        assert (status, answer, server.logins) == (401, "unknown token", 3)
        assert api.secrets[-2:] == ("pw-1234", api.login.current)
        assert "pw-1234" not in str(api.fail("reg:x: echoed pw-1234"))
        api.login = Login(api, "/login", user="app", password="wrong-pw", key="token", json={"password": "wrong-pw"})
        with pytest.raises(TrafficError, match=r"^reg:x: the login as 'app' at http://127\.0\.0\.1:\d+ returned no "
                                               r"token; check the username/password$"):
            await data()
    finally:
        server.stop()


def test_one_verifying_tls_context_serves_every_client() -> None:
    import ssl

    from graylift.adapters._http import new_client, tls_context

    ctx = tls_context()
    assert ctx is tls_context()  # the CA bundle is loaded once per process, not per request
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname  # still verifying
    assert ctx.cert_store_stats()["x509_ca"] > 0
    client = new_client(timeout=1)
    assert client._transport._pool._ssl_context is ctx  # type: ignore[attr-defined]
    assert not client._trust_env


async def test_a_request_searches_for_no_module(server: Routes) -> None:
    """httpcore imports ``sniffio`` at every lock it takes; without that package installed each import failed
    and searched every folder of sys.path again (about 20 file-system lookups, four or five times per
    request: 4,222 searches in one 200-host rollback). Once warm, a request searches for no module."""
    searched: list[str] = []

    class Recorder:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> None:
            searched.append(name)
            return None

    async with httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/ok")).status_code == 200  # imports whatever it imports once
        sys.meta_path.insert(0, Recorder)  # type: ignore[arg-type]
        try:
            for _ in range(5):
                assert (await client.get(server.url + "/ok")).status_code == 200
        finally:
            sys.meta_path.remove(Recorder)  # type: ignore[arg-type]
    assert searched == []


async def test_a_server_that_never_finishes_its_answer_fails_the_request_at_its_time_limit() -> None:
    """httpx's timeouts bound each read and write, not the request: a server sending a byte now and then held
    a step (a mute, a registry call) without end. The time limit is the whole request's."""
    async with Trickle() as slow:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TrafficError) as caught:  # the guard ends the old behaviour's wait early
            await asyncio.wait_for(call(TrafficError, "lb:web", "GET", slow.url + f"/v1?token={SECRET}",
                                        hint="is it running?", timeout=1, secrets=[SECRET]), 10)
        assert loop.time() - started < 5
        assert str(caught.value) == "lb:web: GET /v1 failed: no complete answer in 2s; is it running?"
        async with httpx.AsyncClient() as kept:  # through a client the caller keeps, the same bound
            with pytest.raises(TrafficError, match=r"^lb:web: GET /v1 failed: no complete answer in 2s"):
                await asyncio.wait_for(call(TrafficError, "lb:web", "GET", slow.url + "/v1", hint="-", timeout=1,
                                            client=kept), 10)
