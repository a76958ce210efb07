"""A watch stream's send buffer, bounded in bytes: a watcher that does not read is dropped.

Writing a watch event straight to the response blocks once the socket is full, and then the store's
events pile up behind the blocked writer for as long as the client does not read. kube-apiserver's
cacheWatcher instead puts events in a bounded buffer and, when the buffer stays full past a short
timeout, closes the watch ("Forcing watcher close due to unresponsiveness"); the client re-lists
and watches again. :class:`Outbox` does the same: events are queued for a writer task, and once
more than ``limit`` bytes stay queued for ``grace`` seconds it raises :class:`SlowWatcherError`, and
the caller aborts the connection (a client that does not read cannot be sent a goodbye).

Two ways in. ``put`` waits for room (up to the grace period): for the initial state of a watch,
sent before the store's watch is read. ``offer`` never waits, and fails at once past twice the
limit: for the store's events, because a sender blocked on a full buffer stops draining the store's
watch, whose own queue (tens of MiB) would then fill behind it, and that queue, not this buffer,
would be what a stalled watcher pins. ``stalled`` tells such a sender that the grace period ran out
while no event arrived.
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
        self._slow = asyncio.Event()
        self._deadline: asyncio.TimerHandle | None = None
        self._writer = asyncio.get_running_loop().create_task(self._run())

    async def put(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits (up to the grace period) while the buffer is over its limit."""
        self._check_writer()
        self._queue(chunk)
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

    def offer(self, chunk: bytes) -> None:
        """Queue ``chunk`` without waiting; SlowWatcherError once the watcher is too far behind."""
        self._check_writer()
        self._queue(chunk)
        if self.buffered > 2 * self._limit:
            self._slow.set()
        elif self.buffered > self._limit and self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(self._grace, self._slow.set)
        if self._slow.is_set():
            raise SlowWatcherError(self.buffered)

    async def stalled(self) -> SlowWatcherError:
        """Once more than the limit has stayed queued past the grace period since an ``offer``."""
        await self._slow.wait()
        return SlowWatcherError(self.buffered)

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
        self._cancel_deadline()
        self._writer.cancel()
        with contextlib.suppress(BaseException):
            await self._writer
        self._chunks.clear()
        self.buffered = 0

    def _queue(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.buffered += len(chunk)
        self._idle.clear()
        self._wakeup.set()

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
                    self._cancel_deadline()
        finally:  # wake whoever waits, so that they see the writer has ended
            self._room.set()
            self._idle.set()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
