"""EtcdStore's paged list (``limit``, continue tokens, one revision, any store) and its tombstones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from etcd_support import EtcdCluster

from vmplane.store.base import ExpiredError
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig

pytestmark = [pytest.mark.integration, pytest.mark.requires("etcd")]
VMS = "virtualmachines.kubevirt.io"


def vm(name: str, *, finalizers: list[str] | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name, "namespace": "default", "finalizers": finalizers or []}
    return {"kind": "VirtualMachine", "metadata": metadata, "spec": {"cpu": 1}}


@pytest.fixture
async def prefix() -> str:
    return f"/paging-{uuid.uuid4().hex}"


@pytest.fixture
async def store(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[EtcdStore]:
    opened = await EtcdStore.open(EtcdConfig(etcd_cluster.endpoints), prefix=prefix, compaction_interval=None)
    yield opened
    await opened.close()


def names(items: list[dict[str, object]]) -> list[str]:
    return [item["metadata"]["name"] for item in items]  # type: ignore[index]


async def test_pages_cover_the_list_in_order_at_the_first_pages_revision(store: EtcdStore) -> None:
    for name in ["e", "c", "a", "d", "b"]:
        await store.create(VMS, vm(name))
    first = await store.list_page(VMS, "default", limit=2)
    await store.create(VMS, vm("aa"))  # after the first page: not in this list
    await store.delete(VMS, "default", "d")  # nor is this deletion
    pages = [first]
    while pages[-1].continue_token is not None:
        pages.append(await store.list_page(VMS, "default", limit=2, continue_token=pages[-1].continue_token))
    assert [names(page.result.items) for page in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert {page.result.resource_version for page in pages} == {first.result.resource_version}


async def test_a_continue_token_works_on_another_store(
    store: EtcdStore, etcd_cluster: EtcdCluster, prefix: str
) -> None:
    for name in ["a", "b", "c"]:
        await store.create(VMS, vm(name))
    first = await store.list_page(VMS, None, limit=1)
    other = await EtcdStore.open(EtcdConfig(etcd_cluster.endpoints), prefix=prefix, compaction_interval=None)
    try:
        rest = await other.list_page(VMS, None, limit=10, continue_token=first.continue_token)
    finally:
        await other.close()
    assert (names(first.result.items), names(rest.result.items), rest.continue_token) == (
        ["a"],
        ["b", "c"],
        None,
    )


async def test_an_object_deleted_by_its_last_finalizer_is_not_listed(store: EtcdStore) -> None:
    await store.create(VMS, vm("held", finalizers=["f"]))
    await store.create(VMS, vm("kept"))
    marked = await store.delete(VMS, "default", "held")
    await store.update(VMS, {**marked, "metadata": {**marked["metadata"], "finalizers": []}})
    assert names((await store.list(VMS)).items) == ["kept"]
    assert names((await store.list_page(VMS, "default", limit=1)).result.items) == ["kept"]


async def test_a_continue_token_of_a_compacted_revision_is_expired(store: EtcdStore) -> None:
    for name in ["a", "b"]:
        await store.create(VMS, vm(name))
    first = await store.list_page(VMS, None, limit=1)
    await store.update(VMS, vm("a"))
    await store.compact(await store.current_revision())
    with pytest.raises(ExpiredError):
        await store.list_page(VMS, None, limit=1, continue_token=first.continue_token)


async def test_compaction_removes_tombstones_without_a_watch_seeing_it(
    store: EtcdStore, etcd_cluster: EtcdCluster, prefix: str
) -> None:
    await store.create(VMS, vm("held", finalizers=["f"]))
    marked = await store.delete(VMS, "default", "held")
    await store.update(VMS, {**marked, "metadata": {**marked["metadata"], "finalizers": []}})
    key = f"{prefix}/{VMS}/default/held"
    assert etcd_cluster.etcdctl("get", key, "--print-value-only") != ""  # the tombstone
    events = store.watch(VMS, since=await store.current_revision())
    await store.compact(await store.current_revision())
    assert etcd_cluster.etcdctl("get", key, "--print-value-only") == ""
    created = await store.create(VMS, vm("held"))
    event = await anext(events)  # the sweep's delete is not an event: the create is the next one
    assert (event.type, event.resource_version) == ("ADDED", int(created["metadata"]["resourceVersion"]))
