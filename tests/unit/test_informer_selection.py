"""A Selection reads the full informer's cache through a selector, as a selected watch would serve it.

Over a real MemoryStore and the informer the factory hands out: a factory that selects locally holds
each object once, however many selections read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from vmplane.api.selectors import SelectorError
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Backoff, Informer, Key
from vmplane.reconcile.selection import Selection
from vmplane.store.base import JsonObject
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

pytestmark = pytest.mark.timeout(20)
VMIS = "virtualmachineinstances"
FAST = Backoff(initial=0.01, maximum=0.02)


def vmi(name: str, node: str, *, labels: dict[str, str] | None = None) -> JsonObject:
    metadata: JsonObject = {"name": name, "namespace": "default", "labels": labels or {}}
    return {"metadata": metadata, "status": {"nodeName": node}}


async def until(check: Callable[[], bool]) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def started(store: MemoryStore, *, select_locally: bool = True) -> SharedInformerFactory:
    factory = SharedInformerFactory(StoreObjectClient(store), backoff=FAST, select_locally=select_locally)
    factory.informer(VMIS).start()
    await factory.informer(VMIS).wait_synced()
    return factory


async def test_a_local_selection_reads_the_full_informer_and_holds_no_objects_of_its_own() -> None:
    store = MemoryStore()
    factory = await started(store)
    selection = factory.selected(VMIS, field_selector="status.nodeName=node01")
    assert isinstance(selection, Selection)
    assert factory.informers() == (factory.informer(VMIS),)
    assert factory.selected(VMIS, field_selector="status.nodeName=node01") is selection
    await factory.stop()


async def test_a_selection_gets_and_lists_only_what_its_selector_admits() -> None:
    store = MemoryStore()
    await store.create(VMIS, vmi("here", "node01"))
    await store.create(VMIS, vmi("there", "node02"))
    factory = await started(store)
    selection = factory.selected(VMIS, field_selector="status.nodeName=node01")
    assert selection.get("default", "here") is factory.informer(VMIS).get("default", "here")
    assert selection.get("default", "there") is None
    assert [o["metadata"]["name"] for o in selection.list()] == ["here"]
    assert selection.list("other") == []
    await factory.stop()


async def test_a_selection_applies_label_and_field_selectors_together() -> None:
    store = MemoryStore()
    await store.create(VMIS, vmi("blue", "node01", labels={"tier": "blue"}))
    await store.create(VMIS, vmi("green", "node01", labels={"tier": "green"}))
    factory = await started(store)
    selection = factory.selected(VMIS, label_selector="tier=blue", field_selector="status.nodeName=node01")
    assert [o["metadata"]["name"] for o in selection.list()] == ["blue"]
    await factory.stop()


async def test_a_selection_tells_of_keys_that_enter_change_in_and_leave_it_but_not_of_others() -> None:
    store = MemoryStore()
    factory = await started(store)
    selection = factory.selected(VMIS, field_selector="status.nodeName=node01")
    told: list[Key] = []
    selection.on_change(told.append)
    elsewhere = await store.create(VMIS, vmi("elsewhere", "node02"))
    moving = await store.create(VMIS, vmi("moving", "node02"))
    await until(lambda: factory.informer(VMIS).get("default", "moving") is not None)
    assert told == []
    moved = await store.update(VMIS, {**moving, "status": {"nodeName": "node01"}}, subresource="status")
    await until(lambda: told == [("default", "moving")])
    await store.update(VMIS, {**moved, "status": {"nodeName": "node03"}}, subresource="status")
    await until(lambda: len(told) == 2)
    assert selection.get("default", "moving") is None
    await store.update(VMIS, {**elsewhere, "status": {"nodeName": "node03"}}, subresource="status")
    await until(lambda: factory.informer(VMIS).get("default", "elsewhere") is not None)
    assert told == [("default", "moving"), ("default", "moving")]
    await factory.stop()


async def test_a_selection_made_after_the_sync_still_tells_of_an_admitted_object_deleted() -> None:
    store = MemoryStore()
    await store.create(VMIS, vmi("here", "node01"))
    factory = await started(store)
    selection = factory.selected(VMIS, field_selector="status.nodeName=node01")
    told: list[Key] = []
    selection.on_change(told.append)
    await store.delete(VMIS, "default", "here")
    await until(lambda: told == [("default", "here")])
    assert selection.get("default", "here") is None
    await factory.stop()


async def test_a_factory_that_does_not_select_locally_gives_a_selected_watch_of_its_own() -> None:
    store = MemoryStore()
    await store.create(VMIS, vmi("here", "node01"))
    await store.create(VMIS, vmi("there", "node02"))
    factory = SharedInformerFactory(StoreObjectClient(store), backoff=FAST)
    selected = factory.selected(VMIS, field_selector="status.nodeName=node01")
    assert isinstance(selected, Informer)
    selected.start()
    await selected.wait_synced()
    assert [o["metadata"]["name"] for o in selected.list()] == ["here"]
    await factory.stop()


def test_a_selection_refuses_a_selector_that_does_not_parse() -> None:
    factory = SharedInformerFactory(StoreObjectClient(MemoryStore()), select_locally=True)
    with pytest.raises(SelectorError):
        factory.selected(VMIS, field_selector="status.nodeName")
