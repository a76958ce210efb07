"""Backends the contract suite runs against: add a backend with one line in ``BACKENDS``.

The etcd backend needs a running etcd: one cluster per session (``etcd_cluster`` in
tests/conftest.py), and each store under a fresh key prefix so that every test starts empty.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pytest
from etcd_support import EtcdCluster

from vmplane.store.base import Store
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.clock import FakeClock
from vmplane.testing.memory_store import MemoryStore


class StoreFactory(Protocol):
    """Opens a fresh store of one backend; ``history`` bounds its replayable change log."""

    def __call__(self, *, history: int = ...) -> Awaitable[Store]: ...


# Each backend: (request, tmp_path, clock, history) -> an open store. Every one must start empty.
Opener = Callable[[pytest.FixtureRequest, Path, Callable[[], datetime], int], Awaitable[Store]]


async def _sqlite(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Callable[[], datetime], history: int
) -> Store:
    return SqliteStore.open(tmp_path / "store.db", clock=clock, history=history)


async def _memory(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Callable[[], datetime], history: int
) -> Store:
    return MemoryStore(clock=clock, history=history)


async def _etcd(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Callable[[], datetime], history: int
) -> Store:
    cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
    return await EtcdStore.open(
        EtcdConfig(cluster.endpoints),
        prefix=f"/test-{uuid.uuid4().hex}",
        clock=clock,
        history=history,
        compaction_interval=None,
    )


BACKENDS: dict[str, Opener] = {
    "sqlite": _sqlite,
    "memory": _memory,
    "etcd": _etcd,
}
# What a backend needs from the machine (tests/conftest.py's components).
NEEDS = {"etcd": "etcd"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.requires(NEEDS[name])] if name in NEEDS else [])
        for name in sorted(BACKENDS)
    ]
)
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Opens stores of the parametrized backend (each in its own directory) and closes them after."""
    opener = BACKENDS[request.param]
    opened: list[Store] = []

    async def factory(*, history: int = 100_000) -> Store:
        directory = tmp_path / f"store-{len(opened)}"
        directory.mkdir()
        store = await opener(request, directory, clock, history)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: StoreFactory) -> Store:
    """A fresh, empty store of the parametrized backend."""
    return await open_store()


@pytest.fixture
async def base(store: Store) -> int:
    """The store's revision before the test's first write."""
    return await store.current_revision()
