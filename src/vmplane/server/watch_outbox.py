"""A watch stream's send buffer, bounded in bytes: a watcher that does not read is dropped.

Writing a watch event straight to the response blocks once the socket is full, and then the store's
events pile up behind the blocked writer for as long as the client does not read. kube-apiserver's
cacheWatcher instead puts events in a bounded buffer and, when the buffer stays full past a short
timeout, closes the watch ("Forcing watcher close due to unresponsiveness"); the client re-lists
and watches again. :class:`Outbox` does the same: ``put`` queues encoded events for a writer task,
and once more than ``limit`` bytes stay queued for ``grace`` seconds it raises
:class:`SlowWatcherError`, and the caller aborts the connection (a client that does not read cannot
be sent a goodbye).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import web

__all__ = ["Outbox", "SlowWatcherError"]


class SlowWatcherError(Exception):
    """The watcher left more than its buffer unread for longer than the grace period."""

    def __init__(self, buffered: int) -> None:
        super().__init__(f"watcher is {buffered} bytes behind")
        self.buffered = buffered


class Outbox:
    """Queued chunks of one response, written in order by a task of their own."""

    def __init__(self, response: web.StreamResponse, *, limit: int, grace: float) -> None:
        self._response = response
        self._limit = limit
        self._grace = grace
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer = asyncio.get_running_loop().create_task(self._run())

    async def put(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits (up to the grace period) while the buffer is over its limit."""
        self._check_writer()
        self._chunks.append(chunk)
        self.buffered += len(chunk)
        self._idle.clear()
        self._wakeup.set()
        if self.buffered <= self._limit:
            return
        self._room.clear()
        try:
            async with asyncio.timeout(self._grace):
                while self.buffered > self._limit:
                    self._check_writer()
                    await self._room.wait()
        except TimeoutError:
            raise SlowWatcherError(self.buffered) from None

    async def flush(self) -> None:
        """Wait until everything queued is written (up to the grace period once it stalls)."""
        try:
            async with asyncio.timeout(self._grace):
                await self._idle.wait()
        except TimeoutError:
            raise SlowWatcherError(self.buffered) from None
        self._check_writer()

    async def close(self) -> None:
        """Stop the writer; anything still queued is dropped."""
        self._writer.cancel()
        with contextlib.suppress(BaseException):
            await self._writer
        self._chunks.clear()
        self.buffered = 0

    def _check_writer(self) -> None:
        if self._writer.done():
            error = None if self._writer.cancelled() else self._writer.exception()
            raise ConnectionResetError("watch connection closed") from error

    async def _run(self) -> None:
        try:
            while True:
                while not self._chunks:
                    self._idle.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                chunk = self._chunks.popleft()
                await self._response.write(chunk)
                self.buffered -= len(chunk)
                if self.buffered <= self._limit:
                    self._room.set()
        finally:  # wake whoever waits, so that they see the writer has ended
            self._room.set()
            self._idle.set()
