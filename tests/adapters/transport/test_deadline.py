"""A command's time limit counts the controller's running time (graylift.deadline).

The controller "not running" is its event loop blocked (tests.adapters.conftest.freeze_soon). The command
silencer's: tests/adapters/monitoring/test_command.py."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from graylift.adapters._http import call, new_client
from graylift.adapters.transport.local import LocalTransport
from graylift.adapters.transport.ssh import SshConfig, SshConnector
from graylift.core.model import Host
from graylift.deadline import within
from graylift.errors import CommandTimeout, GrayliftError
from tests.adapters.conftest import Sshd, freeze_soon, needs_root


async def test_an_answer_that_came_while_the_process_did_not_run_is_read() -> None:
    freeze_soon(1.5)
    assert await within(asyncio.sleep(0.3, "answer"), 0.5) == "answer"



@pytest.mark.parametrize("freeze", [0.35, 0.45, 0.5])
async def test_an_answer_that_came_during_a_freeze_ending_at_the_deadline_is_read(freeze: float) -> None:
    """The freeze ends at (or just past) the deadline, so the timer is not late enough to be called a stall;
    the answer is in the socket already (a local command that finished meanwhile) and is read, not called
    a timeout (seen with an HTTP call, timeout 0.5 s + 1 s, frozen 1.5 s)."""
    transport = LocalTransport(Host("controller", "127.0.0.1"))
    command = asyncio.ensure_future(transport.run("sleep 0.1; echo ok", timeout=5))
    freeze_soon(freeze, after=0.05)
    assert (await within(command, 0.5)).stdout == "ok\n"

async def test_a_slow_answer_still_times_out_on_time_and_is_cancelled() -> None:
    slow = asyncio.ensure_future(asyncio.sleep(30))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(slow, 0.3)
    assert 0.29 < time.monotonic() - started < 1.0
    assert slow.cancelled()


async def test_cancelling_the_caller_cancels_what_it_waits_for() -> None:
    inner = asyncio.ensure_future(asyncio.sleep(30))
    outer = asyncio.ensure_future(within(inner, 10))
    await asyncio.sleep(0.1)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner.cancelled()


async def test_a_local_command_that_finished_while_the_controller_was_frozen_is_not_a_timeout() -> None:
    transport = LocalTransport(Host("controller", "127.0.0.1"))
    freeze_soon(2.0)
    assert (await transport.run("sleep 0.3; echo ok", timeout=1)).stdout == "ok\n"
    started = time.monotonic()
    with pytest.raises(CommandTimeout):  # a command that is slow on the host is still one
        await transport.run("sleep 30", timeout=0.5)
    assert time.monotonic() - started < 3


def _connector(sshd: Sshd, *, connect_timeout: float) -> SshConnector:
    return SshConnector(SshConfig(known_hosts=sshd.known_hosts, key=sshd.client_key, connect_timeout=connect_timeout,
                                  command_timeout=30))


def _host(sshd: Sshd) -> Host:
    return Host(name="h1", address="127.0.0.1", port=sshd.port, user="root")


@pytest.mark.root
@needs_root
async def test_an_ssh_command_that_finished_while_the_controller_was_frozen_is_not_a_timeout(sshd: Sshd) -> None:
    connector = _connector(sshd, connect_timeout=5)
    try:
        transport = await connector.connect(_host(sshd))
        assert (await transport.run("true", timeout=5)).exit_status == 0  # connected
        freeze_soon(7.0)  # past the command's limit and the client's grace after it (1 + 5 s)
        assert (await transport.run("sleep 0.3; echo ok", timeout=1)).stdout == "ok\n"
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_an_ssh_connection_made_while_the_controller_was_frozen_is_not_a_timeout(sshd: Sshd) -> None:
    connector = _connector(sshd, connect_timeout=2)
    try:
        freeze_soon(3.0, after=0.01)  # in the middle of the handshake, past the connect timeout
        transport = await connector.connect(_host(sshd))
        assert (await transport.run("echo ok", timeout=5)).stdout == "ok\n"
    finally:
        await connector.close()


@contextlib.contextmanager
def slow_http_server(delay: float) -> Iterator[str]:
    """A server in a thread of this process (it answers while the event loop is blocked) that answers
    ``{"ok": true}`` after ``delay`` seconds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_http_answer_that_came_while_the_controller_was_frozen_is_read() -> None:
    """The HTTP backends' neighbour of the commands': httpx (anyio's deadlines) reads what is in the socket
    before its timer goes off, and the whole request's bound (``deadline.bounded``, 0.5 + 1 s here, due just as
    the 1.5 s freeze ends) takes it up too before it calls a timeout (it did not before ``_settled``)."""
    with slow_http_server(0.3) as url:
        freeze_soon(1.5)
        assert await call(GrayliftError, "test", "GET", url, hint="h", timeout=0.5) == (200, {"ok": True})
        async with new_client() as client:  # a client the backend keeps: its own timeouts do not count either
            freeze_soon(1.5)
            assert await call(GrayliftError, "test", "GET", url, hint="h", timeout=0.5, client=client) == \
                (200, {"ok": True})

