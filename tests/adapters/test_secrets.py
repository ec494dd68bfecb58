"""No error an adapter raises, no preflight line and no adapter name holds a password, a token or a URL's
userinfo: not when the server is down, not when it refuses, and not when it echoes the request back."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from graylift.adapters._http import basic_auth, safe_url, scrub
from graylift.adapters.monitoring.alertmanager import AlertmanagerMonitoring, AlertmanagerSilencer
from graylift.adapters.monitoring.zabbix import ZabbixMonitoring, ZabbixSilencer
from graylift.adapters.traffic.consul import ConsulSwitch, ConsulTraffic
from graylift.adapters.traffic.etcd import EtcdSwitch, EtcdTraffic
from graylift.adapters.traffic.eureka import EurekaSwitch, EurekaTraffic
from graylift.adapters.traffic.nacos import NacosSwitch, NacosTraffic
from graylift.adapters.traffic.nginx_plus import NginxPlusSwitch, NginxPlusTraffic
from graylift.core.model import Host
from graylift.errors import GrayliftError
from graylift.lab import services
from tests.fakes.base import FakeServer, Request, Response

USER, URL_PASSWORD, PASSWORD, TOKEN = "deploy", "Url-Secret-1", "Pw-Secret-2", "Tok-Secret-3"
SECRETS = (URL_PASSWORD, PASSWORD, TOKEN, basic_auth(USER, URL_PASSWORD), basic_auth(USER, PASSWORD))
HOST = Host(name="web1", address="127.0.0.1")
M = TypeVar("M", bound=BaseModel)


@dataclass
class Echo(FakeServer):
    """A server that refuses everything and echoes the whole request (query, headers, body) in its answer."""

    status: int = 500

    def handle(self, request: Request) -> Response:
        return Response(self.status, f"refused {request.method} {request.path} query={request.query} "
                                     f"headers={request.headers} body={request.body!r}", "text/plain")


@pytest.fixture(params=[401, 403, 500])
def echo(request: pytest.FixtureRequest) -> Iterator[str]:
    """The echoing server's base URL, with userinfo."""
    server = Echo(status=int(request.param))
    url = server.start()
    yield url.replace("http://", f"http://{USER}:{URL_PASSWORD}@")
    server.stop()


def _closed() -> str:
    return f"http://{USER}:{URL_PASSWORD}@127.0.0.1:{services.free_port()}"


Adapter = (EtcdSwitch | NacosSwitch | ConsulSwitch | EurekaSwitch | NginxPlusSwitch | AlertmanagerSilencer
           | ZabbixSilencer)

def snapshot(model: type[M], **fields: Any) -> M:
    """An entry as a release's snapshot holds it: it may predate the rule against credentials in URLs."""
    return model.model_validate(fields, context={"snapshot": True})


ADAPTERS: dict[str, Callable[[str], Adapter]] = {
    "etcd": lambda url: EtcdSwitch(snapshot(EtcdTraffic, url=url, service="s", port=80, username=USER, timeout=2,
                                            password_env="PW"), password=PASSWORD),
    "nacos": lambda url: NacosSwitch(snapshot(NacosTraffic, url=url, service="s", port=80, username=USER,
                                              timeout=2, password_env="PW"), password=PASSWORD),
    "consul": lambda url: ConsulSwitch(snapshot(ConsulTraffic, service="s", agent_url=url, timeout=2), token=TOKEN),
    "eureka": lambda url: EurekaSwitch(snapshot(EurekaTraffic, url=url, app="s", port=80, username=USER, timeout=2,
                                                password_env="PW"), password=PASSWORD),
    "nginx_plus": lambda url: NginxPlusSwitch(snapshot(NginxPlusTraffic, url=url, upstream="u", port=80, timeout=2,
                                                       headers={"Authorization": f"Bearer {TOKEN}"})),
    "alertmanager": lambda url: AlertmanagerSilencer(snapshot(AlertmanagerMonitoring, url=url), timeout=2),
    "zabbix": lambda url: ZabbixSilencer(snapshot(ZabbixMonitoring, url=url, username=USER, timeout=2,
                                                  password_env="PW"), password=PASSWORD),
    "zabbix-token": lambda url: ZabbixSilencer(snapshot(ZabbixMonitoring, url=url, timeout=2, token_env="TOKEN"),
                                               token=TOKEN),
}


def _calls(adapter: Adapter) -> list[Callable[[], Awaitable[object]]]:
    if isinstance(adapter, AlertmanagerSilencer | ZabbixSilencer):
        until = datetime.now(UTC) + timedelta(minutes=5)
        return [lambda: adapter.mute(HOST, until=until, reason="r"), lambda: adapter.is_muted(HOST, reason="r"),
                lambda: adapter.unmute(HOST, reason="r")]
    return [lambda: adapter.take_out(HOST), lambda: adapter.put_back(HOST), lambda: adapter.is_out(HOST),
            lambda: adapter.is_in(HOST)]


async def _everything_said(adapter: Adapter) -> list[str]:
    """Every error (as a traceback would print it, chained errors included) and every preflight line."""
    said = [adapter.name]
    for call in _calls(adapter):
        with pytest.raises(GrayliftError) as err:
            await call()
        said.append("".join(traceback.format_exception(err.value)))
    report = await adapter.preflight([HOST])
    assert report.problems, "a refused or unreachable server must be a preflight problem"
    said += [*report.problems, *report.notes]
    await adapter.close()
    return said


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_nothing_secret_in_messages_when_the_server_refuses_and_echoes(kind: str, echo: str) -> None:
    said = await _everything_said(ADAPTERS[kind](echo))
    for text in said:
        for secret in SECRETS:
            assert secret not in text, f"{kind} leaked {secret!r}: {text}"
    assert any("refused" in text for text in said[1:])  # the server's answer is shown, masked


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_nothing_secret_in_messages_when_the_server_is_down(kind: str) -> None:
    url = _closed()
    said = await _everything_said(ADAPTERS[kind](url))
    for text in said:
        for secret in (*SECRETS, f"{USER}:"):
            assert secret not in text, f"{kind} leaked {secret!r}: {text}"
    assert any(safe_url(url).split("//")[1].split("/")[0] in text for text in said)  # the server is still named


def test_safe_url_and_scrub() -> None:
    assert safe_url("http://u:p4ss@h:8500/x/?token=abc#f") == "http://h:8500/x/"
    assert safe_url("http://h:1") == "http://h:1"
    assert scrub("a Pw-Secret-2 b Pw-Secret-2-long", ["Pw-Secret-2", "Pw-Secret-2-long", None, ""]) == "a *** b ***"
    assert scrub("a t b", ["t"]) == "a t b"  # too short to be a secret worth mangling the message for
