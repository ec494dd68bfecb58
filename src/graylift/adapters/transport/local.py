"""Local transport: runs commands on the controller's own host, with the SSH transport's error semantics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

from graylift.core.model import Host
from graylift.deadline import within
from graylift.errors import CommandTimeout, RemoteCommandFailed, TransportError
from graylift.ports import CommandResult

CONTROLLER = Host(name="controller", address="127.0.0.1")  # commands graylift runs on its own machine


class LocalTransport:
    """Each command runs in its own session; a timeout kills its whole process group."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        """Run ``command`` with ``sh``; ``stdin`` (if given) is written to its standard input, then closed."""
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        data = stdin.encode("utf-8") if stdin is not None else None
        try:
            out, err = await within(process.communicate(data), timeout)
        except (TimeoutError, asyncio.CancelledError) as stopped:
            # kill the whole group, then reap it (even for a caller that gave up): nothing left running, and no
            # subprocess transport left for its loop to close later, which a loop ending at once never does
            _kill_group(process.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.shield(asyncio.wait_for(process.communicate(), 5))
            if isinstance(stopped, TimeoutError):
                raise CommandTimeout(self.host.name, command, timeout) from None
            raise
        status = process.returncode if process.returncode is not None else -1
        if status < 0:  # killed by a signal: report it like a shell does
            status = 128 - status
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and status != 0:
            raise RemoteCommandFailed(self.host.name, command, status, stdout + stderr)
        return CommandResult(status, stdout, stderr)

    async def ping(self, *, timeout: float) -> None:
        return None  # this machine: it answers

    async def put(self, local: Path, remote: str) -> None:
        """Copy to ``remote + '.tmp'``, then rename over ``remote``."""
        tmp = remote + ".tmp"

        def copy() -> None:
            shutil.copyfile(local, tmp)
            os.replace(tmp, remote)

        try:
            await asyncio.to_thread(copy)
        except OSError as exc:
            raise TransportError(self.host.name, f"copy of {local} to {remote} failed: "
                                 f"{exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


class LocalConnector:
    """Hands out LocalTransports (every host is this machine; used for the controller and tests)."""

    def __init__(self) -> None:
        self._transports: dict[str, LocalTransport] = {}

    async def connect(self, host: Host) -> LocalTransport:
        return self._transports.setdefault(host.name, LocalTransport(host))

    async def close(self) -> None:
        self._transports.clear()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
