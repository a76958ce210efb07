"""A resourceVersion ahead of the store: waited for briefly, then Kubernetes' 504 Too large."""

from __future__ import annotations

import asyncio

import pytest

from vmplane.apiserver.freshness import too_large, wait_for_revision
from vmplane.apiserver.status import ApiError
from vmplane.testing.memory_store import MemoryStore


def _thing(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "ns"}}


async def test_a_revision_already_reached_returns_at_once() -> None:
    store = MemoryStore()
    made = await store.create("things", _thing("a"))
    await wait_for_revision(store, int(made["metadata"]["resourceVersion"]), timeout=0)


async def test_a_revision_reached_while_waiting_returns() -> None:
    store = MemoryStore()
    current = await store.current_revision()
    waiting = asyncio.ensure_future(wait_for_revision(store, current + 1, timeout=5))
    await asyncio.sleep(0)
    await store.create("things", _thing("a"))
    await asyncio.wait_for(waiting, timeout=5)


async def test_a_revision_never_reached_is_too_large() -> None:
    store = MemoryStore()
    current = await store.current_revision()
    with pytest.raises(ApiError) as err:
        await wait_for_revision(store, current + 100, timeout=0.1)
    assert err.value.code == 504
    assert (
        err.value.status["message"]
        == f"Timeout: Too large resource version: {current + 100}, current: {current}"
    )


def test_too_large_carries_kubernetes_cause_and_retry() -> None:
    status = too_large(9, 3).status
    assert status["reason"] == "Timeout"
    assert status["details"] == {
        "causes": [{"type": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
