"""The informer's reflector, as client-go's: list once, then watch from the last resourceVersion seen.

The client is a StoreObjectClient over a MemoryStore whose watches a test can end normally (as a
server's watch timeout does), break (as an API server restart does) or answer with 410.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from vmplane.client.base import UnavailableError
from vmplane.reconcile.factory import COMPACT_RESOURCES, SharedInformerFactory
from vmplane.reconcile.informer import Backoff, Informer, Key, lean_copy, strip_managed_fields
from vmplane.store.base import ExpiredError, JsonObject, WatchEvent
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

pytestmark = pytest.mark.timeout(20)
NODES = "nodes"
FAST = Backoff(initial=0.01, maximum=0.02)


def node(name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def owned_node(name: str) -> JsonObject:
    entry = {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {}}}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "managedFields": [entry]}}


class ScriptedClient(StoreObjectClient):
    """Each watch first runs the next scripted outcome: ``end`` after one event, ``break``, ``gone``."""

    def __init__(self, store: MemoryStore, script: list[str]) -> None:
        super().__init__(store)
        self.script = script
        self.watched_from: list[int] = []
        self.poked = asyncio.Event()

    async def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        since: int,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(since)
        self.poked.set()
        outcome = self.script.pop(0) if self.script else "live"
        if outcome == "break":
            raise UnavailableError(0, "ServiceUnavailable", "connection refused")
        if outcome == "gone":
            raise ExpiredError("too old resource version")
        async for event in super().watch(resource, namespace, since=since):
            yield event
            self.poked.set()
            if outcome == "end":
                return


async def until(client: ScriptedClient, predicate: Callable[[], bool]) -> None:
    """Wait (bounded) until ``predicate`` holds, re-checking whenever the client opens a watch or the
    informer's cache changes."""

    async def wait() -> None:
        while not predicate():
            client.poked.clear()
            await client.poked.wait()

    await asyncio.wait_for(wait(), 5.0)


async def run(client: ScriptedClient) -> Informer:
    informer = Informer(client, NODES, backoff=FAST)
    informer.start()
    await informer.wait_synced()
    return informer


async def test_a_watch_ended_by_the_server_is_resumed_from_the_last_version_without_a_list() -> None:
    store = MemoryStore()
    client = ScriptedClient(store, ["end"])
    informer = await run(client)
    await store.create(NODES, node("a"))
    await until(client, lambda: informer.get("", "a") is not None)
    created = await store.create(NODES, node("b"))
    await until(client, lambda: informer.get("", "b") is not None)
    assert informer.lists == 1
    assert client.watched_from[1] == int(created["metadata"]["resourceVersion"]) - 1
    await informer.stop()


async def test_a_broken_connection_is_retried_from_the_last_version_without_a_list() -> None:
    store = MemoryStore()
    await store.create(NODES, node("a"))
    client = ScriptedClient(store, ["break", "break"])
    informer = await run(client)
    await store.create(NODES, node("b"))
    await until(client, lambda: informer.get("", "b") is not None)
    assert informer.lists == 1
    assert informer.errors == 2
    assert len(set(client.watched_from)) == 1
    await informer.stop()


async def test_a_410_makes_the_informer_list_again_and_drop_what_is_gone() -> None:
    store = MemoryStore()
    await store.create(NODES, node("a"))
    client = ScriptedClient(store, ["gone"])
    informer = Informer(client, NODES, backoff=FAST)
    changes: list[Key] = []
    informer.on_change(changes.append)
    informer.start()
    await until(client, lambda: informer.lists == 2)
    assert informer.get("", "a") is not None
    assert changes == [("", "a")]
    await informer.stop()


async def test_synced_is_false_until_the_first_list_fills_the_cache() -> None:
    store = MemoryStore()
    await store.create(NODES, node("a"))
    informer = Informer(ScriptedClient(store, []), NODES, backoff=FAST)
    assert not informer.synced
    informer.start()
    await informer.wait_synced()
    assert informer.synced
    assert [o["metadata"]["name"] for o in informer.list()] == ["a"]
    await informer.stop()


def test_the_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_factory_hands_out_one_informer_per_resource_and_selector() -> None:
    factory = SharedInformerFactory(StoreObjectClient(MemoryStore()))
    assert factory.informer(NODES) is factory.informer(NODES)
    assert factory.informer(NODES) is not factory.informer(NODES, field_selector="metadata.name=a")
    assert len(factory.informers()) == 2


async def test_the_factorys_informers_cache_listed_and_watched_objects_without_managed_fields() -> None:
    store = MemoryStore()
    await store.create(NODES, owned_node("listed"))
    client = ScriptedClient(store, [])
    informer = SharedInformerFactory(client, backoff=FAST).informer(NODES)
    informer.start()
    await informer.wait_synced()
    await store.create(NODES, owned_node("watched"))
    await until(client, lambda: informer.get("", "watched") is not None)
    for name in ("listed", "watched"):
        cached = informer.get("", name)
        assert cached is not None
        assert "managedFields" not in cached["metadata"]
        assert cached["metadata"]["resourceVersion"]
    await informer.stop()


async def test_an_informer_without_a_transform_caches_objects_as_served() -> None:
    store = MemoryStore()
    await store.create(NODES, owned_node("a"))
    informer = Informer(ScriptedClient(store, []), NODES, backoff=FAST)
    informer.start()
    await informer.wait_synced()
    cached = informer.get("", "a")
    assert cached is not None
    assert cached["metadata"]["managedFields"][0]["manager"] == "kubectl"
    await informer.stop()


def test_stripping_managed_fields_leaves_the_served_object_untouched() -> None:
    served = owned_node("a")
    stripped = strip_managed_fields(served)
    assert stripped == {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}}
    assert served["metadata"]["managedFields"][0]["manager"] == "kubectl"


def test_an_object_without_managed_fields_is_cached_as_it_is() -> None:
    served = node("a")
    assert strip_managed_fields(served) is served


async def test_a_compact_informer_hands_each_reader_its_own_decoded_copy() -> None:
    store = MemoryStore()
    await store.create(NODES, node("a"))
    informer = Informer(ScriptedClient(store, []), NODES, backoff=FAST, compact=True)
    informer.start()
    await informer.wait_synced()
    first, second = informer.get("", "a"), informer.get("", "a")
    assert first == second == informer.list()[0]
    assert first is not second
    assert first is not None
    assert first["metadata"]["name"] == "a"
    await informer.stop()


async def test_a_compact_informers_relist_reports_only_changed_objects() -> None:
    store = MemoryStore()
    await store.create(NODES, node("kept"))
    client = ScriptedClient(store, ["end", "gone"])
    informer = Informer(client, NODES, backoff=FAST, compact=True)
    changes: list[Key] = []
    informer.on_change(changes.append)
    informer.start()
    await informer.wait_synced()
    changes.clear()
    await store.create(NODES, node("added"))
    await until(client, lambda: informer.lists == 2)
    assert changes == [("", "added")]
    await informer.stop()


async def test_the_factory_keeps_events_compact_and_nodes_shared() -> None:
    store = MemoryStore()
    await store.create(NODES, node("a"))
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"}}
    await store.create("events", event)
    factory = SharedInformerFactory(StoreObjectClient(store), backoff=FAST)
    events, nodes = factory.informer("events"), factory.informer(NODES)
    factory.start()
    await factory.wait_synced()
    assert {"events", "controllerrevisions.apps"} == COMPACT_RESOURCES
    assert events.get("ns", "e") is not events.get("ns", "e")
    assert nodes.get("", "a") is nodes.get("", "a")
    await factory.stop()


def test_a_lean_copy_drops_managed_fields_and_shares_equal_strings_across_objects() -> None:
    ready = {"status": {"phase": "Ready"}}
    first, second = (json.loads(json.dumps(owned_node(name) | ready)) for name in "ab")
    assert first["status"]["phase"] is not second["status"]["phase"]
    lean_first, lean_second = lean_copy(first), lean_copy(second)
    assert lean_first == {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}} | ready
    assert lean_first["status"]["phase"] is lean_second["status"]["phase"]
    assert next(iter(lean_first["status"])) is next(iter(lean_second["status"]))
    assert "managedFields" in first["metadata"]
