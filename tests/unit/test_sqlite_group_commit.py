"""SqliteStore's group commit when a commit fails: nothing of the failed batch is stored or
published, writes decided on top of it fail too, and the store goes on from the last commit with
dense revisions. The failure is injected into the writer thread's commit (a real file otherwise)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vmplane.store.base import StoreError
from vmplane.store.sqlite import SqliteStore
from vmplane.store.sqlite_writer import GroupCommitter, Write

RESOURCE = "things"


def thing(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"n": 1}}


async def test_a_failed_commit_fails_its_batch_and_the_writes_after_it_then_the_store_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore.open(tmp_path / "store.db")
    try:
        await store.create(RESOURCE, thing("kept"))
        real_commit = GroupCommitter._commit
        failing = True

        def commit_once_failing(self: GroupCommitter, writes: list[Write]) -> tuple[int, int, float]:
            nonlocal failing
            if failing:
                failing = False
                raise sqlite3.OperationalError("disk I/O error")
            return real_commit(self, writes)

        monkeypatch.setattr(GroupCommitter, "_commit", commit_once_failing)
        watch = store.watch(RESOURCE, since=1)
        results = await asyncio.gather(
            *(store.create(RESOURCE, thing(f"lost-{i}")) for i in range(20)), return_exceptions=True
        )
        assert len(results) == 20
        assert all(isinstance(r, StoreError) for r in results)
        assert "disk I/O error" in str(results[0])
        after = await store.create(RESOURCE, thing("after"))
        assert after["metadata"]["resourceVersion"] == "2"
        assert [item["metadata"]["name"] for item in (await store.list(RESOURCE)).items] == ["after", "kept"]
        event = await anext(watch)
        assert (event.object["metadata"]["name"], event.resource_version) == ("after", 2)
    finally:
        await store.close()


async def test_writes_refused_in_the_batch_that_takes_the_reset_are_still_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer takes the writes decided on top of a failed batch together with the loop's reset."""
    store = SqliteStore.open(tmp_path / "store.db")
    entered, release, reset_queued = threading.Event(), threading.Event(), threading.Event()

    def blocked_failing_commit(self: GroupCommitter, writes: list[Write]) -> tuple[int, int, float]:
        entered.set()
        release.wait(5)
        raise sqlite3.OperationalError("disk I/O error")

    real_reset, real_deliver = GroupCommitter.reset, GroupCommitter._deliver

    def reset(self: GroupCommitter) -> None:
        real_reset(self)
        reset_queued.set()

    def deliver(writes: list[Write], callback: Callable[..., None], *args: object) -> None:
        real_deliver(writes, callback, *args)
        if args[-1] is True:  # the failed commit: hold the thread until the loop has queued its reset
            reset_queued.wait(5)

    monkeypatch.setattr(GroupCommitter, "_commit", blocked_failing_commit)
    monkeypatch.setattr(GroupCommitter, "reset", reset)
    monkeypatch.setattr(GroupCommitter, "_deliver", staticmethod(deliver))
    try:
        first = asyncio.ensure_future(store.create(RESOURCE, thing("first")))
        await asyncio.to_thread(entered.wait, 5)
        behind = [asyncio.ensure_future(store.create(RESOURCE, thing(f"behind-{i}"))) for i in range(3)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *behind, return_exceptions=True), 10)
        assert all(isinstance(r, StoreError) for r in results)
        assert reset_queued.is_set()
    finally:
        release.set()
        await store.close()
