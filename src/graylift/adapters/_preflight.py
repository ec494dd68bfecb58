"""Small helpers the adapters' ``preflight`` methods share: one-line messages and bounded per-host checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from graylift.core.model import Host
from graylift.core.names import some
from graylift.errors import GrayliftError

T = TypeVar("T")
R = TypeVar("R")
LISTED = 10  # names shown in one note; the rest are counted


def names(items: Sequence[str]) -> str:
    """``a, b, c`` (at most LISTED names, then ``and N more``)."""
    return some(items, LISTED)


def listing(name: str, words: str, items: Sequence[str]) -> tuple[str, ...]:
    """One note ``<name>: <words>: a, b, ...`` naming ``items``; none when there are none."""
    return (f"{name}: {words}: {names(items)}",) if items else ()


def by_host(name: str, hosts: Sequence[Host], state: Callable[[Host], str | bool]) -> tuple[list[str], list[str]]:
    """Sorts ``hosts`` by ``state(host)``: a text (why this backend cannot switch the host: a problem), True
    (already out) or False (in). Returns the problem lines (``<name>: <host>: <why>``) and the hosts out."""
    problems, out = [], []
    for host in hosts:
        found = state(host)
        if isinstance(found, str):
            problems.append(f"{name}: {host.name}: {found}")
        elif found:
            out.append(host.name)
    return problems, out


def every_host(name: str, exc: GrayliftError) -> str:
    """An adapter error (``"<name>: what; do this"``) as a problem line that concerns every host."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first.replace(f"{name}: ", f"{name}: every host: ", 1) if first.startswith(f"{name}: ") \
        else f"{name}: every host: {first}"


async def each(items: Sequence[T], check: Callable[[T], Awaitable[R]], limit: int = 16) -> list[R]:
    """``check`` on every item, at most ``limit`` at once; results in the items' order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await check(item)

    return list(await asyncio.gather(*(one(item) for item in items)))
