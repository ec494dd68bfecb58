"""One lazily connected kazoo client, shared by the ZooKeeper adapters; kazoo's errors become TrafficError."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from graylift.deadline import within
from graylift.errors import TrafficError

T = TypeVar("T")


def children(zk: KazooClient, path: str) -> list[str]:
    """The names of ``path``'s children; none when ``path`` does not exist."""
    try:
        return list(zk.get_children(path))
    except NoNodeError:
        return []


class ZkSession:
    """``call(fn)`` runs ``fn(client)`` (kazoo is synchronous) in a thread, connecting on first use."""

    def __init__(self, *, hosts: str, timeout: float, name: str) -> None:
        self.hosts, self.timeout, self.name = hosts, timeout, name
        self._client: KazooClient | None = None
        self._lock = asyncio.Lock()

    async def call(self, fn: Callable[[KazooClient], T]) -> T:
        try:
            client = await self._connected()
            return await within(asyncio.to_thread(fn, client), self.timeout)
        except TrafficError:
            raise
        except (KazooException, KazooTimeoutError, TimeoutError, OSError, ValueError) as exc:
            raise TrafficError(f"{self.name}: ZooKeeper at {self.hosts} failed: "
                               f"{type(exc).__name__} {exc}".rstrip()
                               + "; is ZooKeeper running and reachable?") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(_stop, client)

    async def _connected(self) -> KazooClient:
        async with self._lock:
            if self._client is None:
                client = KazooClient(hosts=self.hosts, timeout=self.timeout)
                try:
                    await asyncio.to_thread(client.start, self.timeout)
                except (KazooTimeoutError, KazooException, OSError, ValueError) as exc:
                    await asyncio.to_thread(_stop, client)
                    raise TrafficError(f"{self.name}: cannot connect to ZooKeeper at {self.hosts} within "
                                       f"{self.timeout:g}s ({type(exc).__name__}); is it running?") from exc
                self._client = client
            return self._client


def _stop(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except KazooException:
        pass
