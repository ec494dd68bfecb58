"""A real `graylift serve` app (uvicorn on 127.0.0.1, a free port, its own thread) over a real store (SQLite
or PostgreSQL) and the folder hosts and fakes of graylift.testing, with users of every role and a token each.

Everything the server does is real: HTTP, authentication, the desk's checks, the worker pool driving the
real engine, the notifier. Only the hosts are folders and the load balancer and silencer are in memory.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from graylift.api.app import create_app
from graylift.api.deps import ServerSettings
from graylift.auth import ANY, Desk, Grant, Role, local_actor
from graylift.core.model import PromoteMode
from graylift.core.state import ReleaseState
from graylift.service import Graylift
from graylift.testing import FakeFleet
from tests.engine import conftest as engine
from tests.engine.conftest import APP, DEPLOY, World

make_world = engine.make_world  # the engine tests' fixture: a world of folder hosts and fakes
PASSWORD = "correct horse battery"
LOGIN = ("admin", "dev", "appr")
CONFIG = """\
state: {db}
ssh: {{known_hosts: {root}/known_hosts}}
apps:
  {app}:
    package: {{type: tar.gz, local_dir: {artifacts}}}
    deploy: {{dir: {deploy}}}
    commands: {{start: "cat {{current}}/VERSION > {{deploy_dir}}/running", stop: "rm -f {{deploy_dir}}/running"}}
    health: {{command: "test -s {deploy}/running"}}
    strategy:
      canary: {{group: beta, count: 1}}
      batch: {{size: 2}}
    envs:
      test: {{}}
      prod:
        strategy: {{canary: {{promote: manual}}}}
"""

ROLES = {"admin": (ANY, ANY, Role.ADMIN), "dev": (APP, ANY, Role.DEVELOPER), "rel": (APP, ANY, Role.RELEASER),
         "appr": (APP, ANY, Role.APPROVER), "appr2": (APP, ANY, Role.APPROVER), "viewer": (APP, ANY, Role.VIEWER),
         "other": ("shop", ANY, Role.ADMIN)}


class Running:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@dataclass
class Server:
    world: World
    gl: Graylift
    desk: Desk
    running: Running
    tokens: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.running.url

    def client(self, user: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, trust_env=False, **kwargs)
        self.clients.append(client)
        return client

    def wait_state(self, release_id: int, *states: ReleaseState, timeout: float = 30) -> dict[str, Any]:
        client = self.client("admin")
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = client.get(f"/api/v1/releases/{release_id}").json()
            if body["state"] in {s.value for s in states}:
                return body
            time.sleep(0.1)
        raise AssertionError(f"release #{release_id} is {body.get('state')}, not {states}: {body.get('message')}")


def make_graylift(world: World, tmp: Path, db_url: str) -> Graylift:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "known_hosts").write_text("")
    config = tmp / "graylift.yaml"
    config.write_text(CONFIG.format(db=db_url, root=tmp, app=APP, artifacts=world.repository.store.directory,
                                    deploy=DEPLOY))

    # the fakes stand in for the config's backends: prod's manual promotion is set on its runtime here
    manual = FakeFleet(replace(world.fleet.runtime, strategy=replace(world.fleet.runtime.strategy,
                                                                     promote=PromoteMode.MANUAL)),
                       world.folders, world.repository, transports=world.fleet.transports)

    def fleet(snap: dict[str, Any], app: str, env: str, hosts: Any) -> Any:
        return manual if env == "prod" else world.fleet

    return Graylift(config, db_url=db_url, fleet=fleet)


def fast_settings(**changes: Any) -> ServerSettings:
    base = {"pool_interval": 0.1, "notify_interval": 0.1, "stream_poll": 0.1, "webhook_backoff": 0.2,
            "webhook_max_attempts": 3}
    return ServerSettings(**(base | changes))


def add_users(desk: Desk) -> dict[str, str]:
    tokens = {}
    me = local_actor("test")
    for name, (app, env, role) in ROLES.items():
        password = PASSWORD if name in LOGIN else None  # argon2 is slow on purpose: only who logs in has one
        desk.create_user(me, name, password, [Grant(app, env, role)])
        tokens[name] = desk.create_token(me, name, "test")[1]
    return tokens


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends (for the tests where the database's own behaviour matters)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("pg_databases").create())


@pytest.fixture
def start_server(make_world: Callable[..., World], tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start(db_url, **settings) -> a Server; several may share one database (and one world)."""
    made: list[Server] = []
    worlds: list[World] = []

    def start(db_url: str, *, world: World | None = None, users: bool = True, **settings: Any) -> Server:
        if world is None:
            world = worlds[0] if worlds else make_world(8)
            worlds.append(world)
        gl = make_graylift(world, tmp_path / f"server{len(made)}", db_url)
        gl.store.replace_hosts(APP, "prod", world.hosts)
        gl.store.replace_hosts(APP, "test", world.hosts)
        app = create_app(gl, fast_settings(**settings))
        desk: Desk = app.state.desk
        tokens = add_users(desk) if users and not made else (made[0].tokens if made else {})
        server = Server(world, gl, desk, Running(app), tokens)
        made.append(server)
        return server

    yield start
    for server in made:
        for client in server.clients:
            client.close()
        server.running.stop()
        server.gl.close()


@pytest.fixture
def server(start_server: Callable[..., Server], tmp_path: Path) -> Server:
    """A server on SQLite."""
    return start_server(f"sqlite:///{tmp_path}/state.db")


@pytest.fixture
def any_server(start_server: Callable[..., Server], db_url: str) -> Server:
    """A server on SQLite, then on PostgreSQL."""
    return start_server(db_url)
