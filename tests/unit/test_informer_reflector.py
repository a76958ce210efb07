"""The informer's reflector, as client-go's: list once, then watch from the last resourceVersion seen.

The client is a StoreObjectClient over a MemoryStore whose watches a test can end normally (as a
server's watch timeout does), break (as an API server restart does) or answer with 410.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from vmplane.client.base import UnavailableError
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Backoff, Informer, Key
from vmplane.store.base import ExpiredError, JsonObject, WatchEvent
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

pytestmark = pytest.mark.timeout(20)
NODES = "nodes"
FAST = Backoff(initial=0.01, maximum=0.02)


def node(name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


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
