"""A de-duplicating work queue, as client-go's: a key is never handed to two workers at once.

A key added while queued is queued once; a key added while being processed is processed again after
``done``. Keys carry no event payload: a reconciler always re-reads the current state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ShutDownError", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class ShutDownError(Exception):
    """The queue was shut down while waiting for a key."""


class WorkQueue(Generic[K]):
    """FIFO of distinct keys with processing/dirty sets and delayed adds."""

    def __init__(self) -> None:
        self._queue: list[K] = []
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._ready = asyncio.Condition()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already queued; mark it dirty if it is being processed."""
        if self._closed:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        asyncio.get_running_loop().create_task(self._notify())

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending timer for it wins)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _notify(self) -> None:
        async with self._ready:
            self._ready.notify()

    async def get(self) -> K:
        """The next key, marked as processing; raises ShutDownError once shut down."""
        async with self._ready:
            await self._ready.wait_for(lambda: bool(self._queue) or self._closed)
            if self._closed:
                raise ShutDownError
            key = self._queue.pop(0)
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; re-queue it if it changed meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def shutdown(self) -> None:
        """Wake every waiting worker with ShutDownError and drop pending timers."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        async with self._ready:
            self._ready.notify_all()
