"""Each Store backend against a plain dict model, driven by a hypothesis state machine.

The model restates the Kubernetes rules independently of ``store.semantics`` (it must not share the
code it checks). Two watches opened before the first step, one on every namespace and one on
namespace "a", must deliver exactly the model's change log, in order, with nothing extra.

Revisions count from the store's revision when the machine starts (0 for a fresh SQLite or memory
store; EtcdStore shares one etcd, started once per session, under a fresh key prefix per run).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import pytest
from etcd_support import EtcdCluster
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vmplane.store.base import (
    AlreadyExistsError,
    ConflictError,
    InvalidObjectError,
    JsonObject,
    NotFoundError,
    Store,
    StoreError,
    WatchEvent,
)
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.memory_store import MemoryStore

T = TypeVar("T")
RESOURCE = "virtualmachines.kubevirt.io"
Key = tuple[str, str]
Version = Literal["current", "stale", "future", "none"]

# Backends under test, as in tests/contract/conftest.py: (directory, clock) -> open store.
BACKENDS: dict[str, Callable[[Path, Callable[[], datetime]], Awaitable[Store]]] = {
    "sqlite": lambda path, clock: _ready(SqliteStore.open(path / "store.db", clock=clock)),
    "memory": lambda path, clock: _ready(MemoryStore(clock=clock)),
    "etcd": lambda path, clock: _etcd(clock),
}
# Set by the etcd machine's fixture: hypothesis builds machines itself, so they cannot take fixtures.
_ETCD: list[EtcdCluster] = []

keys = st.tuples(st.sampled_from(["", "a", "b"]), st.sampled_from(["x", "y"]))
cpus = st.integers(1, 3)
finalizer_lists = st.lists(st.sampled_from(["f1", "f2"]), unique=True, max_size=2)
label_maps = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["1", "2"]), max_size=2)
versions = st.sampled_from(["current", "stale", "future", "none"])


async def _ready(store: Store) -> Store:
    return store


async def _etcd(clock: Callable[[], datetime]) -> Store:
    return await EtcdStore.open(
        EtcdConfig(_ETCD[0].endpoints),
        prefix=f"/model-{uuid.uuid4().hex}",
        clock=clock,
        compaction_interval=None,
    )


async def _collect(events: AsyncIterator[WatchEvent], sink: list[WatchEvent]) -> None:
    async for event in events:
        sink.append(event)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreMatchesModel(RuleBasedStateMachine):
    """Drives one backend; subclasses pick it with ``backend``."""

    backend: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.now = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
        self.store = self.run(BACKENDS[self.backend](self.directory, lambda: self.now))
        self.model: dict[Key, JsonObject] = {}
        self.revision = self.run(self.store.current_revision())
        self.uids: set[str] = set()
        self.changes: list[tuple[str, JsonObject]] = []
        self.seen_all: list[WatchEvent] = []
        self.seen_a: list[WatchEvent] = []
        self.collectors = [
            self.loop.create_task(_collect(self.store.watch(RESOURCE, since=self.revision), self.seen_all)),
            self.loop.create_task(
                _collect(self.store.watch(RESOURCE, "a", since=self.revision), self.seen_a)
            ),
        ]

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coroutine

        return self.loop.run_until_complete(wrapper())

    def attempt(self, coroutine: Coroutine[Any, Any, T]) -> T | StoreError:
        self.now += timedelta(seconds=1)
        try:
            return self.run(coroutine)
        except StoreError as err:
            return err

    # --- the model -----------------------------------------------------------------------------------

    def version_for(self, key: Key, version: Version) -> int | None:
        current = int(self.model[key]["metadata"]["resourceVersion"]) if key in self.model else 1
        return {"current": current, "stale": current - 1, "future": current + 1, "none": None}[version]

    def record(self, kind: str, key: Key, obj: JsonObject) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        if kind == "DELETED":
            del self.model[key]
        else:
            self.model[key] = obj
        self.changes.append((kind, obj))

    def expect_failure(self, result: object, error: type[StoreError]) -> None:
        assert isinstance(result, error), result

    # --- rules ---------------------------------------------------------------------------------------

    @rule(key=keys, cpu=cpus, finalizers=finalizer_lists, labels=label_maps)
    def create(self, key: Key, cpu: int, finalizers: list[str], labels: dict[str, str]) -> None:
        metadata = {"name": key[1], "namespace": key[0], "labels": labels, "finalizers": finalizers}
        sent = {"kind": "VirtualMachine", "metadata": metadata, "spec": {"cpu": cpu}}
        result = self.attempt(self.store.create(RESOURCE, sent))
        if key in self.model:
            return self.expect_failure(result, AlreadyExistsError)
        assert isinstance(result, dict), result
        uid = result["metadata"]["uid"]
        assert uid not in self.uids
        self.uids.add(uid)
        server = {"uid": uid, "generation": 1, "creationTimestamp": _timestamp(self.now)}
        self.record("ADDED", key, {**sent, "metadata": {**metadata, **server}})
        assert result == self.model[key]

    @rule(key=keys, cpu=cpus, finalizers=finalizer_lists, labels=label_maps, version=versions)
    def update(
        self, key: Key, cpu: int, finalizers: list[str], labels: dict[str, str], version: Version
    ) -> None:
        metadata: JsonObject = {"name": key[1], "namespace": key[0], "labels": labels}
        metadata["finalizers"] = finalizers
        expected_version = self.version_for(key, version)
        if expected_version is not None:
            metadata["resourceVersion"] = str(expected_version)
        sent = {"kind": "VirtualMachine", "metadata": metadata, "spec": {"cpu": cpu}}
        result = self.attempt(self.store.update(RESOURCE, sent))
        old = self.model.get(key)
        if old is None:
            return self.expect_failure(result, NotFoundError)
        if version in ("stale", "future"):
            return self.expect_failure(result, ConflictError)
        marked = "deletionTimestamp" in old["metadata"]
        if marked and not set(finalizers) <= set(old["metadata"]["finalizers"]):
            return self.expect_failure(result, InvalidObjectError)
        server = {
            name: old["metadata"][name]
            for name in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
            if name in old["metadata"]
        }
        server["generation"] = old["metadata"]["generation"] + (cpu != old["spec"]["cpu"])
        expected = {**sent, "metadata": {**metadata, **server}}
        if "status" in old:
            expected["status"] = old["status"]
        self.record("DELETED" if marked and not finalizers else "MODIFIED", key, expected)
        assert result == expected

    @rule(key=keys, phase=st.sampled_from(["Running", "Stopped"]), version=versions)
    def update_status(self, key: Key, phase: str, version: Version) -> None:
        metadata: JsonObject = {"name": key[1], "namespace": key[0], "labels": {"ignored": "yes"}}
        expected_version = self.version_for(key, version)
        if expected_version is not None:
            metadata["resourceVersion"] = str(expected_version)
        sent = {"metadata": metadata, "spec": {"cpu": 99}, "status": {"phase": phase}}
        result = self.attempt(self.store.update(RESOURCE, sent, subresource="status"))
        old = self.model.get(key)
        if old is None:
            return self.expect_failure(result, NotFoundError)
        if version in ("stale", "future"):
            return self.expect_failure(result, ConflictError)
        self.record("MODIFIED", key, {**old, "metadata": dict(old["metadata"]), "status": {"phase": phase}})
        assert result == self.model[key]

    @rule(key=keys, version=versions)
    def delete(self, key: Key, version: Version) -> None:
        expected_version = self.version_for(key, version)
        result = self.attempt(self.store.delete(RESOURCE, *key, resource_version=expected_version))
        old = self.model.get(key)
        if old is None:
            return self.expect_failure(result, NotFoundError)
        if version in ("stale", "future"):
            return self.expect_failure(result, ConflictError)
        metadata = dict(old["metadata"])
        if metadata["finalizers"] and "deletionTimestamp" in metadata:
            assert result == old  # already being deleted: nothing is written
            return
        if metadata["finalizers"]:
            metadata.update(deletionTimestamp=_timestamp(self.now), deletionGracePeriodSeconds=0)
            self.record("MODIFIED", key, {**old, "metadata": metadata})
        else:
            self.record("DELETED", key, {**old, "metadata": metadata})
        assert result == self.changes[-1][1]

    @precondition(lambda self: any(o["metadata"]["finalizers"] for o in self.model.values()))
    @rule(data=st.data())
    def remove_a_finalizer(self, data: st.DataObject) -> None:
        key = data.draw(
            st.sampled_from(sorted(k for k, o in self.model.items() if o["metadata"]["finalizers"]))
        )
        old = self.model[key]
        finalizers = list(old["metadata"]["finalizers"])
        finalizers.remove(data.draw(st.sampled_from(finalizers)))
        sent = {**old, "metadata": {**old["metadata"], "finalizers": finalizers}}
        result = self.attempt(self.store.update(RESOURCE, sent))
        kind = "DELETED" if "deletionTimestamp" in old["metadata"] and not finalizers else "MODIFIED"
        self.record(kind, key, {**sent, "metadata": dict(sent["metadata"])})
        assert result == self.changes[-1][1]

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        listed = self.run(self.store.list(RESOURCE))
        assert listed.resource_version == self.revision
        assert listed.items == [self.model[key] for key in sorted(self.model)]

    def teardown(self) -> None:
        try:
            # Closing ends the watches only after they delivered what they hold, so awaiting the
            # collectors waits for every event without polling, and an extra event would show up.
            self.run(self.store.close())
            self.run(asyncio.wait_for(asyncio.gather(*self.collectors), 5))
            self.check_watch(self.seen_all, self.changes)
            self.check_watch(self.seen_a, [c for c in self.changes if c[1]["metadata"]["namespace"] == "a"])
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            shutil.rmtree(self.directory)

    @staticmethod
    def check_watch(seen: list[WatchEvent], changes: list[tuple[str, JsonObject]]) -> None:
        expected = [(kind, obj, int(obj["metadata"]["resourceVersion"])) for kind, obj in changes]
        assert [(e.type, e.object, e.resource_version) for e in seen] == expected


# No explain phase: its line tracing made shrinking a failure against SQLite take minutes and
# gigabytes; the shrunk step list is explanation enough.
_settings = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


class SqliteStoreMachine(StoreMatchesModel):
    backend = "sqlite"


class MemoryStoreMachine(StoreMatchesModel):
    backend = "memory"


class EtcdStoreMachine(StoreMatchesModel):
    backend = "etcd"


TestSqliteStoreMatchesModel = pytest.mark.timeout(120)(SqliteStoreMachine.TestCase)
TestSqliteStoreMatchesModel.settings = _settings
TestMemoryStoreMatchesModel = MemoryStoreMachine.TestCase
TestMemoryStoreMatchesModel.settings = _settings


@pytest.fixture
def _etcd_for_machine(etcd_cluster: EtcdCluster) -> Iterator[None]:
    _ETCD.append(etcd_cluster)
    yield
    _ETCD.clear()


TestEtcdStoreMatchesModel = pytest.mark.requires("etcd")(
    pytest.mark.usefixtures("_etcd_for_machine")(pytest.mark.timeout(180)(EtcdStoreMachine.TestCase))
)
TestEtcdStoreMatchesModel.settings = _settings
