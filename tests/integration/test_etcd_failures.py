"""EtcdStore when etcd fails: real members on loopback, killed, stopped, compacted (bounded in time).

- kill -9 of the leader during a burst of writes: writes resume within 15 s through another
  endpoint, no acknowledged write is lost, and a watch delivers every change once, in order;
- a watch that fell behind a compaction gets ExpiredError (410); a re-list and a watch from the
  list's revision converge with the writes that went on meanwhile;
- a member stopped while writes go on, then brought back, catches up: every member reports the same
  revision and the same hash of its key-value history.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from etcd_support import EtcdCluster

from vmplane.store.base import ExpiredError, StoreError, WatchEvent
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig

pytestmark = [pytest.mark.integration, pytest.mark.requires("etcd"), pytest.mark.timeout(90)]
VMS = "virtualmachines.kubevirt.io"


def vm(name: str) -> dict[str, object]:
    return {"kind": "VirtualMachine", "metadata": {"name": name, "namespace": "default"}, "spec": {"cpu": 1}}


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    three = EtcdCluster(size=3, in_memory=True).start()
    try:
        yield three
    finally:
        three.stop()


async def open_store(cluster: EtcdCluster, *, first: str | None = None) -> EtcdStore:
    """A store on every member, talking to ``first`` until it fails (a short per-call timeout: a
    write in flight when the leader dies otherwise stalls ~7 s)."""
    endpoints = sorted(cluster.endpoints, key=lambda endpoint: endpoint != first)
    config = EtcdConfig(tuple(endpoints), call_timeout=1.0, deadline=30.0)
    return await EtcdStore.open(config, compaction_interval=None)


class Collector:
    """Gathers a watch's events; ``reached(revision)`` waits until one at or past it arrived."""

    def __init__(self) -> None:
        self.seen: list[WatchEvent] = []
        self._target = 0
        self._reached = asyncio.Event()

    async def run(self, events: AsyncIterator[WatchEvent]) -> None:
        async for event in events:
            self.seen.append(event)
            if self._target and event.resource_version >= self._target:
                self._reached.set()

    async def reached(self, revision: int, timeout: float) -> None:
        self._target = revision
        if self.seen and self.seen[-1].resource_version >= revision:
            return
        await asyncio.wait_for(self._reached.wait(), timeout)


async def test_writes_resume_after_the_leader_is_killed_and_nothing_acknowledged_is_lost(
    cluster: EtcdCluster,
) -> None:
    leader = cluster.leader()
    store = await open_store(cluster, first=leader.endpoint)  # its writes and watch must fail over
    collector = Collector()
    watcher = asyncio.create_task(collector.run(store.watch(VMS, since=await store.current_revision())))
    acknowledged: dict[str, int] = {}
    ack_times: list[float] = []
    killed_at = 0.0
    try:
        for index in range(120):
            if index == 40:
                cluster.kill(leader)
                killed_at = time.monotonic()
            name = f"vm-{index}"
            try:
                created = await store.create(VMS, vm(name))
            except StoreError:
                continue  # not acknowledged: it may or may not have been stored
            acknowledged[name] = int(created["metadata"]["resourceVersion"])
            ack_times.append(time.monotonic())
        first_after = min(t for t in ack_times if t > killed_at)
        print(f"writes resumed {first_after - killed_at:.2f} s after the leader was killed")
        assert first_after - killed_at < 15, f"writes resumed {first_after - killed_at:.1f} s after the kill"
        listed = await store.list(VMS)
        stored = {item["metadata"]["name"]: int(item["metadata"]["resourceVersion"]) for item in listed.items}
        assert acknowledged.items() <= stored.items()  # every acknowledged write is there, as acknowledged
        await collector.reached(listed.resource_version, timeout=15)
        seen = collector.seen
        revisions = [event.resource_version for event in seen]
        assert revisions == sorted(set(revisions))  # in order, no duplicates
        assert {e.object["metadata"]["name"]: e.resource_version for e in seen} == stored  # no gaps
    finally:
        await store.close()
        await asyncio.wait_for(watcher, 10)


async def test_a_watch_behind_a_compaction_gets_expired_and_a_relist_converges(cluster: EtcdCluster) -> None:
    store = await open_store(cluster)
    writer = await open_store(cluster)
    try:
        lagging_from = await store.current_revision()
        for index in range(20):
            await writer.create(VMS, vm(f"old-{index}"))
        await writer.compact(await writer.current_revision())
        with pytest.raises(ExpiredError):
            await anext(store.watch(VMS, since=lagging_from))

        async def keep_writing() -> None:
            for index in range(30):
                await writer.create(VMS, vm(f"new-{index}"))

        writing = asyncio.create_task(keep_writing())
        listed = await store.list(VMS)  # the reflector's re-list, while writes go on
        cache = {item["metadata"]["name"]: item for item in listed.items}
        events = store.watch(VMS, since=listed.resource_version)
        await writing
        final = await writer.current_revision()
        async with asyncio.timeout(10):
            async for event in events:
                cache[event.object["metadata"]["name"]] = event.object
                if event.resource_version >= final:
                    break
        assert cache == {item["metadata"]["name"]: item for item in (await writer.list(VMS)).items}
        assert len(cache) == 50
    finally:
        await writer.close()
        await store.close()


async def test_a_member_stopped_and_brought_back_does_not_diverge(cluster: EtcdCluster) -> None:
    store = await open_store(cluster)
    follower = next(member for member in cluster.members if member is not cluster.leader())
    try:
        for index in range(20):
            await store.create(VMS, vm(f"before-{index}"))
        cluster.stop_member(follower)
        for index in range(50):
            await store.create(VMS, vm(f"while-{index}"))
        cluster.restart(follower)
        for index in range(10):
            await store.create(VMS, vm(f"after-{index}"))
        expected = await store.current_revision()
    finally:
        await store.close()
    deadline = time.monotonic() + 20
    while True:
        statuses = json.loads(cluster.etcdctl("endpoint", "status", "-w", "json"))
        revisions = {status["Status"]["header"]["revision"] for status in statuses}
        if revisions == {expected} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert revisions == {expected}
    hashes = json.loads(cluster.etcdctl("endpoint", "hashkv", "-w", "json"))
    assert len({entry["HashKV"]["hash"] for entry in hashes}) == 1
    assert len(hashes) == 3
