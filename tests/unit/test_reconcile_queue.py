"""The work queue de-duplicates keys and never hands one key to two workers at once."""

from __future__ import annotations

import asyncio

import pytest

from vmplane.reconcile.loop import Controller, Result
from vmplane.reconcile.queue import ShutDownError, WorkQueue


async def test_a_key_added_twice_while_queued_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    assert await queue.get() == "a"
    assert len(queue) == 0


async def test_a_key_added_while_processing_is_queued_again_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0
    queue.done(key)
    assert await queue.get() == "a"


async def test_add_after_delivers_the_key_later() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.01)
    assert await asyncio.wait_for(queue.get(), 2) == "a"


async def test_shutdown_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    await queue.shutdown()
    with pytest.raises(ShutDownError):
        await waiter


class Recording:
    def __init__(self, failures: int = 0) -> None:
        self.active: set[str] = set()
        self.overlaps = 0
        self.calls = 0
        self.failures = failures
        self.done = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        if key in self.active:
            self.overlaps += 1
        self.active.add(key)
        self.calls += 1
        await asyncio.sleep(0.001)
        self.active.discard(key)
        if self.calls <= self.failures:
            raise RuntimeError("transient")
        self.done.set()
        return Result()


async def test_controller_never_reconciles_one_key_concurrently() -> None:
    reconciler = Recording()
    controller: Controller[str] = Controller(name="t", reconciler=reconciler, workers=4)
    controller.start()
    for _ in range(50):
        controller.queue.add("a")
        await asyncio.sleep(0)
    await asyncio.wait_for(reconciler.done.wait(), 2)
    await controller.stop()
    assert reconciler.overlaps == 0


async def test_controller_retries_a_failing_key_with_backoff() -> None:
    reconciler = Recording(failures=2)
    controller: Controller[str] = Controller(name="t", reconciler=reconciler, base_delay=0.001)
    controller.start()
    controller.queue.add("a")
    await asyncio.wait_for(reconciler.done.wait(), 2)
    await controller.stop()
    assert reconciler.calls == 3
