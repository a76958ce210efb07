"""A de-duplicating work queue, as client-go's: a key is never handed to two workers at once.

A key added while queued is queued once; a key added while being processed is processed again after
``done``. Keys carry no event payload: a reconciler always re-reads the current state.

``observer`` sees what client-go's queue metrics count (``workqueue_*``); the composition root sets it
(``metrics.Metrics.queue``), the default observes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

__all__ = ["QueueObserver", "ShutDownError", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class ShutDownError(Exception):
    """The queue was shut down while waiting for a key."""


class QueueObserver(Protocol):
    """What a queue reports, as client-go's ``workqueue.MetricsProvider`` sees it."""

    def added(self, depth: int) -> None:
        """A key was queued (or marked dirty while processing); ``depth`` is the queue's length now."""

    def started(self, waited: float, depth: int) -> None:
        """A worker took a key ``waited`` seconds after it was added."""

    def finished(self, worked: float) -> None:
        """A worker finished a key after ``worked`` seconds."""

    def retried(self) -> None:
        """A failed key was queued again with backoff."""


class _Unobserved:
    def added(self, depth: int) -> None:
        pass

    def started(self, waited: float, depth: int) -> None:
        pass

    def finished(self, worked: float) -> None:
        pass

    def retried(self) -> None:
        pass


class WorkQueue(Generic[K]):
    """FIFO of distinct keys with processing/dirty sets and delayed adds."""

    def __init__(self) -> None:
        self.observer: QueueObserver = _Unobserved()
        self._added_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
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
            if key not in self._dirty:
                self._dirty.add(key)
                self._added_at.setdefault(key, time.monotonic())
                self.observer.added(len(self._queue))
            return
        if key in self._queued:
            return
        self._added_at.setdefault(key, time.monotonic())
        self._enqueue(key)
        self.observer.added(len(self._queue))

    def _enqueue(self, key: K) -> None:
        self._queued.add(key)
        self._queue.append(key)
        asyncio.get_running_loop().create_task(self._notify())

    def retry_after(self, key: K, delay: float) -> None:
        """``add_after`` for a key whose reconcile failed (counted as a retry)."""
        self.observer.retried()
        self.add_after(key, delay)

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
        now = time.monotonic()
        self._started_at[key] = now
        self.observer.started(now - self._added_at.pop(key, now), len(self._queue))
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; re-queue it if it changed meanwhile."""
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self.observer.finished(time.monotonic() - started)
        if key in self._dirty:
            self._dirty.discard(key)
            if not self._closed:
                self._enqueue(key)  # counted when it was marked dirty

    async def shutdown(self) -> None:
        """Wake every waiting worker with ShutDownError and drop pending timers."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        async with self._ready:
            self._ready.notify_all()
