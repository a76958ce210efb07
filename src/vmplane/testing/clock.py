"""Time for tests: a ``FakeClock`` that moves only when told to, and an event loop on virtual time.

``FakeClock`` is the ``Callable[[], datetime]`` clock the controller, store and event recorder take.
``VirtualTimeLoop`` is an asyncio loop whose ``time()`` jumps to the next timer whenever nothing is
ready to run, so ``call_later``/``asyncio.sleep``-driven code (the work queue's ``add_after``, the
controller's retry backoff, a driver's latency) runs at once while keeping its order and arithmetic.
Real I/O still works on it: the loop polls its file descriptors without blocking before it jumps.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

__all__ = ["START", "FakeClock", "VirtualTimeLoop", "run_in_virtual_time"]

T = TypeVar("T")

#: Where every ``FakeClock`` starts: 2026-11-28T10:00:00Z.
START = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


class FakeClock:
    """A UTC wall clock at ``start`` that moves only through ``advance`` (or ``sleep``)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """An injectable ``asyncio.sleep``: moves the clock instead of waiting (and yields once)."""
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without blocking; when the loop would wait ``timeout`` seconds, time jumps instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None:
            # Nothing scheduled at all: only I/O can wake the loop, so wait for it for real.
            return ready or super().select(timeout)
        self.now += max(timeout, 0.0)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time starting at 0.0 (``loop.time()``)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh ``VirtualTimeLoop`` and close it."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
