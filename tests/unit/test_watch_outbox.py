"""The watch send buffer: a watcher that does not read is dropped without the store's queue filling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vmplane.apiserver.watch_outbox import Outbox, SlowWatcherError

LIMIT = 100
GRACE = 0.2


class Socket:
    """A response whose peer reads only while ``reading`` is set."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.written: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        await self.reading.wait()
        self.written.append(chunk)


def outbox(socket: Socket) -> Outbox:
    response: Any = socket
    return Outbox(response, limit=LIMIT, grace=GRACE)


async def test_an_offer_past_twice_the_limit_fails_at_once() -> None:
    box = outbox(Socket())
    box.offer(b"x" * (2 * LIMIT))
    with pytest.raises(SlowWatcherError):
        box.offer(b"x")
    await box.close()


async def test_a_watcher_over_the_limit_past_the_grace_period_is_stalled_with_no_further_offer() -> None:
    box = outbox(Socket())
    box.offer(b"x" * (LIMIT + 1))
    error = await asyncio.wait_for(box.stalled(), GRACE * 10)
    assert error.buffered == LIMIT + 1
    with pytest.raises(SlowWatcherError):
        box.offer(b"y")
    await box.close()


async def test_a_watcher_that_catches_up_within_the_grace_period_is_not_stalled() -> None:
    socket = Socket()
    box = outbox(socket)
    box.offer(b"x" * (LIMIT + 1))
    socket.reading.set()
    await box.flush()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(box.stalled(), GRACE * 2)
    box.offer(b"y")
    await box.flush()
    assert socket.written == [b"x" * (LIMIT + 1), b"y"]
    await box.close()


async def test_put_waits_for_room_then_fails_after_the_grace_period() -> None:
    box = outbox(Socket())
    await box.put(b"x" * LIMIT)
    with pytest.raises(SlowWatcherError):
        await box.put(b"x")
    await box.close()


async def test_put_returns_once_the_reader_makes_room() -> None:
    socket = Socket()
    box = outbox(socket)
    await box.put(b"x" * LIMIT)
    asyncio.get_running_loop().call_later(GRACE / 4, socket.reading.set)
    await box.put(b"y")
    await box.flush()
    assert socket.written[-1] == b"y"
    await box.close()
