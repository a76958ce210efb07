"""A work queue reports what client-go's queue metrics count: adds, waits, work and retries."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmplane.reconcile.queue import WorkQueue


@dataclass
class Recorder:
    adds: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    works: list[float] = field(default_factory=list)
    retries: int = 0

    def added(self, depth: int) -> None:
        self.adds.append(depth)

    def started(self, waited: float, depth: int) -> None:
        self.waits.append(waited)

    def finished(self, worked: float) -> None:
        self.works.append(worked)

    def retried(self) -> None:
        self.retries += 1


async def test_a_key_added_twice_while_queued_counts_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.observer = recorder = Recorder()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert recorder.adds == [1, 2]


async def test_a_key_dirtied_while_processing_counts_once_and_is_not_recounted_on_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.observer = recorder = Recorder()
    queue.add("a")
    key = await queue.get()
    queue.add(key)
    queue.add(key)
    queue.done(key)
    assert len(recorder.adds) == 2
    assert len(queue) == 1
    assert len(recorder.works) == 1


async def test_get_reports_the_wait_and_done_the_work() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.observer = recorder = Recorder()
    queue.add("a")
    key = await queue.get()
    queue.done(key)
    assert len(recorder.waits) == 1
    assert recorder.waits[0] >= 0
    assert len(recorder.works) == 1
    assert recorder.works[0] >= 0


async def test_retry_after_counts_a_retry() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.observer = recorder = Recorder()
    queue.retry_after("a", 0)
    assert recorder.retries == 1
    assert recorder.adds == [1]
