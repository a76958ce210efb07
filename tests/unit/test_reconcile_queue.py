"""The work queue de-duplicates keys and never hands one key to two workers at once.

Delays run on ``VirtualTimeLoop``: they are checked to the second and take no real time.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from vmplane.reconcile.loop import Controller, Result
from vmplane.reconcile.queue import ShutDownError, WorkQueue
from vmplane.testing.clock import run_in_virtual_time


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


def test_add_after_delivers_the_key_after_its_delay_not_before() -> None:
    async def scenario() -> tuple[str, float]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 30)
        key = await queue.get()
        return key, asyncio.get_running_loop().time()

    assert run_in_virtual_time(scenario()) == ("a", pytest.approx(30, abs=0.01))


def test_an_earlier_add_after_wins_over_a_later_one() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 60)
        queue.add_after("a", 5)
        queue.add_after("a", 20)
        await queue.get()
        return loop.time()

    assert run_in_virtual_time(scenario()) == pytest.approx(5, abs=0.01)


async def test_shutdown_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    await queue.shutdown()
    with pytest.raises(ShutDownError):
        await waiter


class Recording:
    """A reconciler that takes a (virtual) second per key and fails its first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.active: set[str] = set()
        self.overlaps = 0
        self.calls = 0
        self.failures = failures
        self.done = asyncio.Event()
        self.started_at: list[float] = []

    async def reconcile(self, key: str) -> Result:
        if key in self.active:
            self.overlaps += 1
        self.active.add(key)
        self.calls += 1
        self.started_at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(1)
        self.active.discard(key)
        if self.calls <= self.failures:
            raise RuntimeError("transient")
        self.done.set()
        return Result()


def test_controller_never_reconciles_one_key_concurrently() -> None:
    async def scenario() -> Recording:
        reconciler = Recording()
        controller: Controller[str] = Controller(name="t", reconciler=reconciler, workers=4)
        controller.start()
        for _ in range(50):
            controller.queue.add("a")
            await asyncio.sleep(0.1)
        await asyncio.wait_for(reconciler.done.wait(), 60)
        await controller.stop()
        return reconciler

    reconciler = run_in_virtual_time(scenario())
    assert reconciler.calls >= 2
    assert reconciler.overlaps == 0


def test_controller_retries_a_failing_key_with_backoff_doubling_to_its_cap() -> None:
    async def scenario() -> Recording:
        reconciler = Recording(failures=4)
        controller: Controller[str] = Controller(name="t", reconciler=reconciler, base_delay=10, max_delay=30)
        controller.start()
        controller.queue.add("a")
        await asyncio.wait_for(reconciler.done.wait(), 600)
        await controller.stop()
        return reconciler

    reconciler = run_in_virtual_time(scenario())
    assert reconciler.calls == 5
    # Each call takes 1 s; the retries wait 10, 20, then the cap of 30 s after each failure.
    gaps = [later - earlier - 1 for earlier, later in itertools.pairwise(reconciler.started_at)]
    assert gaps == pytest.approx([10, 20, 30, 30], abs=0.01)
