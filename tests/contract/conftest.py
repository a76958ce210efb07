"""Backends the contract suite runs against: add a backend with one line in ``BACKENDS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pytest

from vmplane.store.base import Store
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.clock import FakeClock
from vmplane.testing.memory_store import MemoryStore


class StoreFactory(Protocol):
    """Opens a fresh store of one backend; ``history`` bounds its replayable change log."""

    def __call__(self, *, history: int = ...) -> Awaitable[Store]: ...


# Each backend: (tmp_path, clock, history) -> an open store. Every one must start empty.
Opener = Callable[[Path, Callable[[], datetime], int], Awaitable[Store]]


async def _sqlite(tmp_path: Path, clock: Callable[[], datetime], history: int) -> Store:
    return SqliteStore.open(tmp_path / "store.db", clock=clock, history=history)


async def _memory(tmp_path: Path, clock: Callable[[], datetime], history: int) -> Store:
    return MemoryStore(clock=clock, history=history)


BACKENDS: dict[str, Opener] = {
    "sqlite": _sqlite,
    "memory": _memory,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Opens stores of the parametrized backend (each in its own directory) and closes them after."""
    opener = BACKENDS[request.param]
    opened: list[Store] = []

    async def factory(*, history: int = 100_000) -> Store:
        directory = tmp_path / f"store-{len(opened)}"
        directory.mkdir()
        store = await opener(directory, clock, history)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: StoreFactory) -> Store:
    """A fresh, empty store of the parametrized backend."""
    return await open_store()
