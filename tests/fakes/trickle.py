"""An HTTP server that never finishes its answer: a status line, then a header line every 0.2 s without end.

Each read of a client gets bytes long before its read timeout, so only a bound on the whole request ends it: a
hung backend, or a proxy in front of one, that keeps the connection alive."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Trickle:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.answers: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.url = ""

    async def __aenter__(self) -> Trickle:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.answers.add(task)
            try:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\n")
                while True:
                    await asyncio.sleep(0.2)
                    writer.write(b"X-Still: here\r\n")
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.answers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.contextmanager
def trickle_in_a_thread() -> Iterator[Trickle]:
    """A Trickle served by an event loop of its own thread, for code that runs its own loop or none."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    trickle = asyncio.run_coroutine_threadsafe(Trickle().__aenter__(), loop).result(5)
    try:
        yield trickle
    finally:
        asyncio.run_coroutine_threadsafe(trickle.__aexit__(None, None, None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
