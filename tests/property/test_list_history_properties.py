"""Any sequence of writes after a list: the list rebuilt at its revision is the list as it was, or,
once the history it needs is compacted, a refusal (never other data)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vmplane.apiserver.list_history import list_at
from vmplane.apiserver.watch_cache import WatchCaches
from vmplane.store.base import AlreadyExistsError, ExpiredError, NotFoundError
from vmplane.testing.memory_store import MemoryStore

RESOURCE = "things"
NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
NAMESPACES = st.sampled_from(["one", "two"])
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), NAMESPACES, NAMES, st.integers(0, 9)), max_size=25
)


async def _write(store: MemoryStore, operation: tuple[str, str, str, int]) -> None:
    kind, namespace, name, value = operation
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace}, "spec": {"value": value}}
    if kind == "delete":
        with contextlib.suppress(NotFoundError):
            await store.delete(RESOURCE, namespace, name)
        return
    try:
        await store.create(RESOURCE, obj)
    except AlreadyExistsError:
        current = await store.get(RESOURCE, namespace, name)
        await store.update(RESOURCE, {**current, "spec": {"value": value}})


async def _scenario(before: list[Any], after: list[Any], namespace: str | None, history: int) -> None:
    store = MemoryStore(history=history)
    caches = WatchCaches(store=store, wait_timeout=5)
    try:
        for operation in before:
            await _write(store, operation)
        listed = await store.list(RESOURCE, namespace)
        for operation in after:
            await _write(store, operation)
        try:
            items, current = await list_at(store, caches, RESOURCE, namespace, listed.resource_version)
        except ExpiredError:
            assert len(before) + len(after) > history  # refused only once history was dropped
            return
        assert current >= listed.resource_version
        assert [item.object for item in items] == listed.items
    finally:
        await caches.close()
        await store.close()


@settings(max_examples=120, deadline=None)
@given(OPERATIONS, OPERATIONS, st.one_of(st.none(), NAMESPACES), st.sampled_from([5, 1000]))
def test_a_list_rebuilt_at_its_revision_is_the_list_as_it_was(
    before: list[Any], after: list[Any], namespace: str | None, history: int
) -> None:
    asyncio.run(_scenario(before, after, namespace, history))
