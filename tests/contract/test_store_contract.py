"""The Store contract: one behaviour per test, run against every backend in ``conftest.BACKENDS``.

Revisions are counted from ``base``, the store's revision when the test starts: 0 for a fresh SQLite
or memory store, whatever the shared etcd cluster is at for EtcdStore (one global revision).
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest

from vmplane.store import watching
from vmplane.store.base import (
    AlreadyExistsError,
    ConflictError,
    ExpiredError,
    InvalidObjectError,
    JsonObject,
    NotFoundError,
    Store,
    StoreError,
    WatchEvent,
)
from vmplane.testing.clock import FakeClock


# The fixture's type, restated here because conftest modules are not importable by name.
class StoreFactory(Protocol):
    def __call__(self, *, history: int = ...) -> Awaitable[Store]: ...


VMS = "virtualmachines.kubevirt.io"
PODS = "pods"


def vm(name: str, namespace: str = "default", *, cpu: int = 1, **metadata: Any) -> JsonObject:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"cpu": cpu},
    }


def _nested(depth: int) -> JsonObject:
    value: JsonObject = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def rv(obj: JsonObject) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    async with asyncio.timeout(5):
        return [await anext(events) for _ in range(count)]


def summary(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.type, e.object["metadata"]["name"], e.resource_version) for e in events]


# --- create and get ---------------------------------------------------------------------------------


async def test_create_sets_server_metadata(store: Store, base: int) -> None:
    created = await store.create(VMS, vm("a"))
    meta = created["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert meta["resourceVersion"] == str(base + 1)
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == "2026-11-28T10:00:00Z"


async def test_get_returns_what_create_returned(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    assert await store.get(VMS, "default", "a") == created


async def test_resource_version_increases_across_all_objects_and_resources(store: Store, base: int) -> None:
    a = await store.create(VMS, vm("a"))
    b = await store.create(PODS, vm("b"))
    c = await store.create(VMS, vm("c", "other"))
    assert [rv(a), rv(b), rv(c)] == [base + 1, base + 2, base + 3]


async def test_create_replaces_client_supplied_server_fields(store: Store, base: int) -> None:
    sent = vm("a", uid="mine", resourceVersion="77", generation=9, deletionTimestamp="2020-01-01T00:00:00Z")
    meta = (await store.create(VMS, sent))["metadata"]
    assert (meta["resourceVersion"], meta["generation"]) == (str(base + 1), 1)
    assert meta["uid"] != "mine"
    assert "deletionTimestamp" not in meta


async def test_create_duplicate_raises_already_exists(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    with pytest.raises(AlreadyExistsError):
        await store.create(VMS, vm("a"))
    assert await store.current_revision() == base + 1


async def test_same_name_in_other_namespace_or_resource_is_distinct(store: Store, base: int) -> None:
    await store.create(VMS, vm("a", "one"))
    await store.create(VMS, vm("a", "two"))
    await store.create(PODS, vm("a", "one"))
    assert await store.current_revision() == base + 3


async def test_cluster_scoped_objects_use_empty_namespace(store: Store) -> None:
    await store.create("nodes", {"metadata": {"name": "n1"}})
    assert (await store.get("nodes", "", "n1"))["metadata"]["name"] == "n1"


async def test_null_namespace_means_cluster_scoped(store: Store) -> None:
    await store.create("nodes", {"metadata": {"name": "n1", "namespace": None}})
    assert [i["metadata"]["name"] for i in (await store.list("nodes", "")).items] == ["n1"]


async def test_get_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get(VMS, "default", "absent")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"metadata": {}}, id="no-name"),
        pytest.param({"metadata": {"name": ""}}, id="empty-name"),
        pytest.param({"spec": {}}, id="no-metadata"),
        pytest.param({"metadata": {"name": "a", "namespace": 3}}, id="namespace-not-string"),
        pytest.param({"metadata": {"name": "a"}, "spec": {"x": {1, 2}}}, id="set-value"),
        pytest.param({"metadata": {"name": "a"}, "spec": {"x": math.nan}}, id="nan"),
        pytest.param({"metadata": {"name": "a"}, "spec": {"x": b"raw"}}, id="bytes"),
        pytest.param({"metadata": {"name": "a"}, "spec": {1: "int-key"}}, id="int-key"),
        pytest.param({"metadata": {"name": "a", "finalizers": "f"}}, id="finalizers-not-list"),
        pytest.param({"metadata": {"name": "a"}, "spec": _nested(100_000)}, id="too-deep"),
    ],
)
async def test_create_of_invalid_object_raises_and_stores_nothing(
    store: Store, base: int, bad: JsonObject
) -> None:
    with pytest.raises(InvalidObjectError):
        await store.create(VMS, bad)
    assert await store.current_revision() == base
    assert (await store.list(VMS)).items == []


async def test_caller_cannot_mutate_stored_state(store: Store) -> None:
    sent = vm("a", labels={"x": "1"})
    created = await store.create(VMS, sent)
    snapshot = copy.deepcopy(created)
    sent["metadata"]["labels"]["x"] = "changed"
    created["spec"]["cpu"] = 99
    (await store.get(VMS, "default", "a"))["metadata"]["labels"]["x"] = "again"
    (await store.list(VMS)).items[0]["spec"]["cpu"] = 42
    assert await store.get(VMS, "default", "a") == snapshot


# --- list -------------------------------------------------------------------------------------------


async def test_list_orders_by_namespace_then_name(store: Store) -> None:
    for namespace, name in [("b", "x"), ("a", "z"), ("a", "y"), ("", "w")]:
        await store.create(VMS, vm(name, namespace))
    items = (await store.list(VMS)).items
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]
    assert keys == [("", "w"), ("a", "y"), ("a", "z"), ("b", "x")]


async def test_list_filters_by_namespace_and_resource(store: Store) -> None:
    await store.create(VMS, vm("a", "one"))
    await store.create(VMS, vm("b", "two"))
    await store.create(PODS, vm("c", "one"))
    assert [i["metadata"]["name"] for i in (await store.list(VMS, "one")).items] == ["a"]


async def test_list_resource_version_is_the_latest_write(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    await store.create(PODS, vm("b"))
    assert (await store.list(VMS)).resource_version == base + 2


async def test_list_of_unknown_resource_is_empty(store: Store, base: int) -> None:
    result = await store.list("widgets")
    assert (result.items, result.resource_version) == ([], base)


# --- update -----------------------------------------------------------------------------------------


async def test_update_with_current_resource_version_succeeds(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    created["spec"]["cpu"] = 2
    updated = await store.update(VMS, created)
    assert (rv(updated), updated["spec"]["cpu"]) == (rv(created) + 1, 2)


async def test_update_with_stale_resource_version_conflicts(store: Store) -> None:
    stale = await store.create(VMS, vm("a"))
    current = await store.update(VMS, vm("a", cpu=2))
    stale["spec"]["cpu"] = 3
    with pytest.raises(ConflictError):
        await store.update(VMS, stale)
    assert await store.get(VMS, "default", "a") == current


async def test_update_without_resource_version_is_unconditional(store: Store) -> None:
    await store.create(VMS, vm("a"))
    await store.update(VMS, vm("a", cpu=2))
    assert (await store.update(VMS, vm("a", cpu=3)))["spec"]["cpu"] == 3


async def test_update_with_malformed_resource_version_is_invalid(store: Store) -> None:
    await store.create(VMS, vm("a"))
    with pytest.raises(InvalidObjectError):
        await store.update(VMS, vm("a", resourceVersion="latest"))


async def test_update_of_missing_object_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.update(VMS, vm("absent"))


async def test_update_with_invalid_object_stores_nothing(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    with pytest.raises(InvalidObjectError):
        await store.update(VMS, {**vm("a"), "spec": {"x": object()}})
    assert await store.get(VMS, "default", "a") == created


async def test_update_keeps_uid_and_creation_timestamp(store: Store, clock: FakeClock) -> None:
    created = await store.create(VMS, vm("a"))
    clock.advance(60)
    sent = vm("a", cpu=2, creationTimestamp="1999-01-01T00:00:00Z", generation=50)
    meta = (await store.update(VMS, sent))["metadata"]
    assert (meta["uid"], meta["creationTimestamp"]) == (
        created["metadata"]["uid"],
        created["metadata"]["creationTimestamp"],
    )


async def test_update_with_another_uid_is_invalid(store: Store) -> None:
    await store.create(VMS, vm("a"))
    with pytest.raises(InvalidObjectError):
        await store.update(VMS, vm("a", uid="00000000-0000-0000-0000-000000000000"))


async def test_generation_bumped_when_spec_changes(store: Store) -> None:
    await store.create(VMS, vm("a"))
    assert (await store.update(VMS, vm("a", cpu=2)))["metadata"]["generation"] == 2


async def test_generation_unchanged_by_metadata_only_update(store: Store) -> None:
    await store.create(VMS, vm("a"))
    updated = await store.update(VMS, vm("a", labels={"x": "y"}, annotations={"k": "v"}))
    assert (updated["metadata"]["generation"], updated["metadata"]["labels"]) == (1, {"x": "y"})


async def test_generation_bumped_when_json_type_changes_but_python_value_is_equal(store: Store) -> None:
    await store.create(VMS, {**vm("a"), "spec": {"on": 1}})
    assert (await store.update(VMS, {**vm("a"), "spec": {"on": True}}))["metadata"]["generation"] == 2


async def test_main_update_keeps_stored_status(store: Store) -> None:
    await store.create(VMS, vm("a"))
    await store.update(VMS, {**vm("a"), "status": {"ready": True}}, subresource="status")
    updated = await store.update(VMS, {**vm("a", cpu=2), "status": {"ready": False}})
    assert updated["status"] == {"ready": True}


async def test_status_update_changes_only_the_status(store: Store) -> None:
    created = await store.create(VMS, vm("a", labels={"x": "1"}))
    sent = {**vm("a", cpu=8, labels={"x": "2"}), "status": {"ready": True}}
    updated = await store.update(VMS, sent, subresource="status")
    assert updated["status"] == {"ready": True}
    assert (updated["spec"], updated["metadata"]["labels"]) == (created["spec"], {"x": "1"})


async def test_generation_unchanged_by_status_update(store: Store) -> None:
    await store.create(VMS, vm("a"))
    updated = await store.update(VMS, {**vm("a"), "status": {"ready": True}}, subresource="status")
    assert (updated["metadata"]["generation"], rv(updated)) == (1, await store.current_revision())


async def test_status_update_with_stale_resource_version_conflicts(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    await store.update(VMS, vm("a", cpu=2))
    with pytest.raises(ConflictError):
        await store.update(VMS, {**created, "status": {"ready": True}}, subresource="status")


# --- delete and finalizers --------------------------------------------------------------------------


async def test_delete_removes_object_and_returns_it_with_the_deletion_version(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    deleted = await store.delete(VMS, "default", "a")
    assert (deleted["metadata"]["uid"], rv(deleted)) == (created["metadata"]["uid"], rv(created) + 1)
    with pytest.raises(NotFoundError):
        await store.get(VMS, "default", "a")


async def test_delete_of_missing_object_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.delete(VMS, "default", "absent")


async def test_delete_with_stale_resource_version_conflicts(store: Store) -> None:
    created = await store.create(VMS, vm("a"))
    updated = await store.update(VMS, vm("a", cpu=2))
    with pytest.raises(ConflictError):
        await store.delete(VMS, "default", "a", resource_version=rv(created))
    assert await store.current_revision() == rv(updated)


async def test_delete_with_current_resource_version_succeeds(store: Store) -> None:
    created = rv(await store.create(VMS, vm("a")))
    assert rv(await store.delete(VMS, "default", "a", resource_version=created)) == created + 1


async def test_delete_with_finalizers_only_marks_the_object(store: Store, clock: FakeClock) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    clock.advance(5)
    marked = await store.delete(VMS, "default", "a")
    assert marked["metadata"]["deletionTimestamp"] == "2026-11-28T10:00:05Z"
    assert await store.get(VMS, "default", "a") == marked


async def test_marking_for_deletion_keeps_generation(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    assert (await store.delete(VMS, "default", "a"))["metadata"]["generation"] == 1


async def test_deleting_a_marked_object_again_changes_nothing(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    marked = await store.delete(VMS, "default", "a")
    assert await store.delete(VMS, "default", "a") == marked
    assert await store.current_revision() == rv(marked)


async def test_removing_last_finalizer_of_marked_object_deletes_it(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    marked = await store.delete(VMS, "default", "a")
    marked["metadata"]["finalizers"] = []
    final = await store.update(VMS, marked)
    assert (rv(final), final["metadata"]["finalizers"]) == (rv(marked) + 1, [])
    with pytest.raises(NotFoundError):
        await store.get(VMS, "default", "a")


async def test_removing_one_of_two_finalizers_keeps_marked_object(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f", "g"]))
    marked = await store.delete(VMS, "default", "a")
    marked["metadata"]["finalizers"] = ["g"]
    await store.update(VMS, marked)
    assert (await store.get(VMS, "default", "a"))["metadata"]["finalizers"] == ["g"]


async def test_removing_finalizers_of_unmarked_object_does_not_delete_it(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    await store.update(VMS, vm("a", finalizers=[]))
    assert (await store.get(VMS, "default", "a"))["metadata"]["finalizers"] == []


async def test_finalizers_cannot_be_added_to_marked_object(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    await store.delete(VMS, "default", "a")
    with pytest.raises(InvalidObjectError):
        await store.update(VMS, vm("a", finalizers=["f", "new"]))


async def test_update_cannot_set_or_clear_deletion_timestamp(store: Store) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    sent = vm("a", finalizers=["f"], deletionTimestamp="2026-01-01T00:00:00Z")
    assert "deletionTimestamp" not in (await store.update(VMS, sent))["metadata"]
    marked = await store.delete(VMS, "default", "a")
    kept = (await store.update(VMS, vm("a", finalizers=["f"])))["metadata"]["deletionTimestamp"]
    assert kept == marked["metadata"]["deletionTimestamp"]


async def test_recreate_after_delete_gets_a_new_uid(store: Store) -> None:
    first = await store.create(VMS, vm("a"))
    await store.delete(VMS, "default", "a")
    second = await store.create(VMS, vm("a"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]


# --- revision ---------------------------------------------------------------------------------------


async def test_current_revision_counts_every_write_including_deletes(store: Store, base: int) -> None:
    assert await store.current_revision() == base
    await store.create(VMS, vm("a"))
    await store.update(VMS, vm("a", cpu=2))
    await store.delete(VMS, "default", "a")
    assert await store.current_revision() == base + 3


async def test_closed_store_rejects_calls(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await store.get(VMS, "default", "a")


# --- watch ------------------------------------------------------------------------------------------


async def test_watch_replays_every_change_after_since_in_order(store: Store, base: int) -> None:
    await store.create(VMS, vm("a", finalizers=["f"]))
    await store.create(VMS, vm("b"))
    await store.update(VMS, vm("a", cpu=2, finalizers=["f"]))
    await store.delete(VMS, "default", "a")
    await store.delete(VMS, "default", "b")
    await store.update(VMS, vm("a", cpu=2, finalizers=[]))
    events = await take(store.watch(VMS, since=base + 1), 5)
    assert summary(events) == [
        ("ADDED", "b", base + 2),
        ("MODIFIED", "a", base + 3),
        ("MODIFIED", "a", base + 4),
        ("DELETED", "b", base + 5),
        ("DELETED", "a", base + 6),
    ]


async def test_watch_event_object_carries_its_resource_version(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    [event] = await take(store.watch(VMS, since=base), 1)
    assert rv(event.object) == event.resource_version == base + 1


async def test_watch_streams_live_changes_after_replay(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    events = store.watch(VMS, since=base)
    assert summary(await take(events, 1)) == [("ADDED", "a", base + 1)]
    await store.create(VMS, vm("b"))
    await store.update(VMS, vm("a", cpu=3))
    assert summary(await take(events, 2)) == [("ADDED", "b", base + 2), ("MODIFIED", "a", base + 3)]


async def test_watch_from_current_revision_sees_only_later_changes(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    events = store.watch(VMS, since=await store.current_revision())
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await store.create(VMS, vm("b"))
    async with asyncio.timeout(5):
        assert summary([await pending]) == [("ADDED", "b", base + 2)]


async def test_watch_after_list_misses_nothing(store: Store) -> None:
    await store.create(VMS, vm("a"))
    listed = await store.list(VMS)
    await store.create(VMS, vm("b"))
    events = store.watch(VMS, since=listed.resource_version)
    await store.create(VMS, vm("c"))
    assert [name for _, name, _ in summary(await take(events, 2))] == ["b", "c"]


async def test_watch_filters_by_resource_and_namespace(store: Store, base: int) -> None:
    events = store.watch(VMS, "one", since=base)
    await store.create(VMS, vm("a", "two"))
    await store.create(PODS, vm("b", "one"))
    await store.create(VMS, vm("c", "one"))
    assert summary(await take(events, 1)) == [("ADDED", "c", base + 3)]


async def test_watch_of_all_namespaces_sees_every_namespace(store: Store, base: int) -> None:
    await store.create(VMS, vm("a", "one"))
    await store.create(VMS, vm("b", "two"))
    assert [n for _, n, _ in summary(await take(store.watch(VMS, since=base), 2))] == ["a", "b"]


async def test_watch_delivers_deleted_event_with_last_state(store: Store, base: int) -> None:
    await store.create(VMS, vm("a", labels={"x": "1"}))
    await store.delete(VMS, "default", "a")
    [_, deleted] = await take(store.watch(VMS, since=base), 2)
    assert (deleted.type, deleted.object["metadata"]["labels"], rv(deleted.object)) == (
        "DELETED",
        {"x": "1"},
        base + 2,
    )


async def test_watch_events_are_independent_copies(store: Store, base: int) -> None:
    first, second = store.watch(VMS, since=base), store.watch(VMS, since=base)
    await store.create(VMS, vm("a"))
    [event] = await take(first, 1)
    event.object["spec"]["cpu"] = 99
    [other] = await take(second, 1)
    assert other.object["spec"]["cpu"] == (await store.get(VMS, "default", "a"))["spec"]["cpu"] == 1


async def test_watch_from_compacted_version_is_gone(open_store: StoreFactory) -> None:
    store = await open_store(history=5)
    versions = [rv(await store.create(VMS, vm(f"vm-{index}"))) for index in range(20)]
    with pytest.raises(ExpiredError):
        await anext(store.watch(VMS, since=versions[0]))


async def test_watch_within_retained_history_replays(open_store: StoreFactory) -> None:
    store = await open_store(history=5)
    versions = [rv(await store.create(VMS, vm(f"vm-{index}"))) for index in range(20)]
    events = await take(store.watch(VMS, since=versions[14]), 5)
    assert [e.resource_version for e in events] == versions[15:]


async def test_watcher_that_falls_behind_still_gets_every_change_once(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watching, "LIVE_QUEUE_LIMIT", 3)
    store = await open_store()
    base = await store.current_revision()
    events = store.watch(VMS, since=base)
    await store.create(VMS, vm("vm-0"))
    await take(events, 1)
    for index in range(1, 10):  # overflows the live queue: the watch falls back to the log
        await store.create(VMS, vm(f"vm-{index}"))
    assert [e.resource_version for e in await take(events, 9)] == list(range(base + 2, base + 11))


def kinds(events: list[WatchEvent]) -> list[tuple[str, int]]:
    return [(e.type, e.resource_version) for e in events]


async def test_progress_watch_reports_the_head_once_caught_up(store: Store, base: int) -> None:
    await store.create(VMS, vm("a"))
    await store.create(PODS, vm("p"))
    events = store.watch(VMS, since=base, progress=True)
    [added, bookmark] = await take(events, 2)
    assert kinds([added, bookmark]) == [("ADDED", base + 1), ("BOOKMARK", base + 2)]
    assert bookmark.object == {}


async def test_progress_request_covers_writes_to_other_resources(store: Store, base: int) -> None:
    events = store.watch(VMS, since=base, progress=True)
    assert kinds(await take(events, 1)) == [("BOOKMARK", base)]
    await store.create(VMS, vm("a"))
    await store.create(PODS, vm("p"))
    await store.request_progress()
    assert kinds(await take(events, 2)) == [("ADDED", base + 1), ("BOOKMARK", base + 2)]


async def test_progress_request_is_answered_after_a_fall_back_to_the_log(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watching, "LIVE_QUEUE_LIMIT", 3)
    store = await open_store()
    base = await store.current_revision()
    events = store.watch(VMS, since=base, progress=True)
    assert kinds(await take(events, 1)) == [("BOOKMARK", base)]
    for index in range(10):  # overflows the live queue while the request is pending
        await store.create(VMS, vm(f"vm-{index}"))
    await store.request_progress()
    await store.create(PODS, vm("p"))
    got = await take(events, 11)
    assert kinds(got[:10]) == [("ADDED", revision) for revision in range(base + 1, base + 11)]
    assert got[10].type == "BOOKMARK"
    assert got[10].resource_version >= base + 10


async def test_plain_watch_sends_no_bookmarks(store: Store, base: int) -> None:
    events = store.watch(VMS, since=base)
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await store.create(PODS, vm("p"))
    await store.request_progress()
    await store.create(VMS, vm("a"))
    async with asyncio.timeout(5):
        assert summary([await pending]) == [("ADDED", "a", base + 2)]


async def test_watch_on_closed_store_raises(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await anext(store.watch(VMS, since=0))


async def test_close_ends_open_watches(store: Store, base: int) -> None:
    events = store.watch(VMS, since=base)
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(5):
            await pending
