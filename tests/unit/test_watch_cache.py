"""The API's watch cache over a MemoryStore: consistent reads, order, relisting after 410, fallbacks."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vmplane.apiserver.watch_cache import WatchCaches
from vmplane.store import watching
from vmplane.store.base import JsonObject, StoreError, WatchEvent
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
VMS = "virtualmachines.kubevirt.io"
OTHER = "configmaps"


def vm(name: str, namespace: str = "default", **labels: str) -> JsonObject:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": {"cpu": 1}}


def names(items: list[Any]) -> list[tuple[str, str]]:
    return [(i.object["metadata"]["namespace"], i.object["metadata"]["name"]) for i in items]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore(history=1000)
    yield memory
    await memory.close()


@pytest.fixture
async def caches(store: MemoryStore, caplog: pytest.LogCaptureFixture) -> AsyncIterator[WatchCaches]:
    """Caches whose every read must come from memory, not from the fall-back to the store."""
    cached = WatchCaches(store=store, wait_timeout=5)
    yield cached
    await cached.close()
    assert not [r for r in caplog.get_records("call") if "listing from the store" in r.getMessage()]


async def test_snapshot_is_the_store_list_with_encoded_items(store: MemoryStore, caches: WatchCaches) -> None:
    await store.create(VMS, vm("b", "two"))
    await store.create(VMS, vm("a", "two"))
    await store.create(VMS, vm("z", "one"))
    snapshot = await caches.snapshot(VMS, None)
    listed = await store.list(VMS)
    assert [i.object for i in snapshot.items] == listed.items
    assert [json.loads(i.raw) for i in snapshot.items] == listed.items
    assert snapshot.resource_version == listed.resource_version == 3
    assert names((await caches.snapshot(VMS, "two")).items) == [("two", "a"), ("two", "b")]
    assert (await caches.snapshot(VMS, "none")).items == []


async def test_reads_see_every_write_before_them(store: MemoryStore, caches: WatchCaches) -> None:
    await caches.snapshot(VMS, None)  # the cache is running before the writes
    created = await store.create(VMS, vm("a"))
    assert names((await caches.snapshot(VMS, None)).items) == [("default", "a")]
    await store.update(VMS, {**created, "spec": {"cpu": 2}})
    [item] = (await caches.snapshot(VMS, None)).items
    assert item.object["spec"] == {"cpu": 2}
    assert json.loads(item.raw)["spec"] == {"cpu": 2}
    await store.delete(VMS, "default", "a")
    assert (await caches.snapshot(VMS, None)).items == []


async def test_writes_to_other_resources_move_the_snapshot_revision(
    store: MemoryStore, caches: WatchCaches
) -> None:
    await caches.snapshot(VMS, None)
    await store.create(VMS, vm("a"))
    await caches.snapshot(VMS, None)  # the cache's watch is live: it delivered that create
    await store.create(OTHER, vm("c"))
    await store.create(OTHER, vm("d"))
    snapshot = await caches.snapshot(VMS, None)
    assert snapshot.resource_version == await store.current_revision() == 3
    assert names(snapshot.items) == [("default", "a")]


async def test_watch_from_a_snapshot_revision_misses_and_repeats_nothing(
    store: MemoryStore, caches: WatchCaches
) -> None:
    for name in ("a", "b"):
        await store.create(VMS, vm(name))
    snapshot = await caches.snapshot(VMS, None)
    await store.create(VMS, vm("c"))
    await store.delete(VMS, "default", "a")
    events = store.watch(VMS, since=snapshot.resource_version)
    async with asyncio.timeout(5):
        got = [await anext(events), await anext(events)]
    assert [(e.type, e.object["metadata"]["name"]) for e in got] == [("ADDED", "c"), ("DELETED", "a")]
    await events.aclose()  # type: ignore[attr-defined]


async def test_snapshot_is_unchanged_by_later_writes(store: MemoryStore, caches: WatchCaches) -> None:
    created = await store.create(VMS, vm("a", app="web"))
    snapshot = await caches.snapshot(VMS, None)
    await store.update(VMS, {**created, "metadata": {**created["metadata"], "labels": {"app": "db"}}})
    await store.create(VMS, vm("b"))
    await caches.snapshot(VMS, None)
    assert names(snapshot.items) == [("default", "a")]
    assert snapshot.items[0].object["metadata"]["labels"] == {"app": "web"}


async def test_cache_lists_again_when_its_watch_expires(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmplane.apiserver.watch_cache")
    monkeypatch.setattr(watching, "LIVE_QUEUE_LIMIT", 3)
    small = MemoryStore(history=5)
    caches = WatchCaches(store=small, wait_timeout=5)
    try:
        await caches.snapshot(VMS, None)
        # MemoryStore writes never suspend, so the cache's watch falls behind by all 40 and its
        # history is gone: it must list again (410) rather than serve a gap.
        for index in range(40):
            await small.create(VMS, vm(f"vm-{index:02d}"))
        snapshot = await caches.snapshot(VMS, None)
        assert [i.object for i in snapshot.items] == (await small.list(VMS)).items
        assert snapshot.resource_version == 40
        assert "fell behind the store; listing again" in caplog.text
        assert "listing from the store" not in caplog.text
    finally:
        await caches.close()
        await small.close()


class BrokenWatchStore(MemoryStore):
    """A store whose watches fail: the cache cannot keep up and reads must use the store."""

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        async def failing() -> AsyncIterator[WatchEvent]:
            raise StoreError("watch broke")
            yield  # pragma: no cover

        return failing()


async def test_a_failed_cache_falls_back_to_the_store() -> None:
    store = BrokenWatchStore()
    caches = WatchCaches(store=store, wait_timeout=5)
    try:
        await store.create(VMS, vm("a"))
        assert names((await caches.snapshot(VMS, None)).items) == [("default", "a")]
        await store.create(VMS, vm("b"))
        await asyncio.sleep(0)  # the cache's watch fails
        snapshot = await caches.snapshot(VMS, None)
        assert names(snapshot.items) == [("default", "a"), ("default", "b")]
        assert snapshot.resource_version == 2
    finally:
        await caches.close()
        await store.close()


class SilentProgressStore(MemoryStore):
    """A store that never answers progress requests: the cache cannot confirm it is current."""

    async def request_progress(self) -> None:
        pass

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        return super().watch(resource, namespace, since=since)


async def test_a_cache_that_cannot_catch_up_falls_back_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SilentProgressStore()
    caches = WatchCaches(store=store, wait_timeout=0.05)
    try:
        await store.create(VMS, vm("a"))
        await caches.snapshot(VMS, None)
        await store.create(OTHER, vm("c"))
        snapshot = await caches.snapshot(VMS, None)
        assert (names(snapshot.items), snapshot.resource_version) == ([("default", "a")], 2)
        assert "timed out; listing from the store" in caplog.text
    finally:
        await caches.close()
        await store.close()


async def test_random_writes_interleaved_with_reads_match_the_store(
    store: MemoryStore, caches: WatchCaches
) -> None:
    rng = random.Random(7)
    for _ in range(300):
        namespace, name = rng.choice(["a", "b", ""]), rng.choice("xyz")
        resource = rng.choice([VMS, VMS, VMS, OTHER])
        try:
            if rng.random() < 0.3:
                await store.delete(resource, namespace, name)
            else:
                current = await store.get(resource, namespace, name)
                labels = {"n": str(rng.randint(0, 9))}
                await store.update(
                    resource, {**current, "metadata": {**current["metadata"], "labels": labels}}
                )
        except StoreError:  # not there: create it
            await store.create(resource, vm(name, namespace))
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # let the cache run part way
        if rng.random() < 0.4:
            ns = rng.choice([None, "a", ""])
            snapshot = await caches.snapshot(VMS, ns)
            listed = await store.list(VMS, ns)
            assert [i.object for i in snapshot.items] == listed.items
            assert snapshot.resource_version == listed.resource_version
