"""The source agent publishes a migration's progress at most once per ``PROGRESS_INTERVAL``: each
publication is a VMI write that wakes the agent again."""

from __future__ import annotations

import json
from typing import Any

from vmplane.agent.migration import PROGRESS_INTERVAL, MigrationActor
from vmplane.agent.migration_plan import ReportProgress
from vmplane.api.migration import PROGRESS_ANNOTATION
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.hypervisor.migration import MigrationProgress, MigrationStatus
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class NoEvents:
    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        raise AssertionError("progress records no event")


async def report(actor: MigrationActor, store: MemoryStore, transferred: int) -> float | None:
    raw = await store.get(VIRTUAL_MACHINE_INSTANCES, "default", "vm")
    step = ReportProgress(MigrationProgress(MigrationStatus.ACTIVE, transferred_bytes=transferred))
    result = await actor.act(step, VirtualMachineInstance.model_validate(raw), raw, "default_vm")
    return result.requeue_after


async def published(store: MemoryStore) -> int:
    raw = await store.get(VIRTUAL_MACHINE_INSTANCES, "default", "vm")
    return int(json.loads(raw["metadata"]["annotations"][PROGRESS_ANNOTATION])["transferredBytes"])


async def test_progress_is_published_at_once_then_at_most_once_per_interval() -> None:
    store = MemoryStore()
    state = {"migrationUid": "m-1", "sourceNode": "node01", "targetNode": "node02"}
    await store.create(
        VIRTUAL_MACHINE_INSTANCES,
        {"metadata": {"name": "vm", "namespace": "default"}, "spec": {}, "status": {"migrationState": state}},
    )
    clock = Clock()
    actor = MigrationActor(
        client=StoreObjectClient(store),
        hypervisor=None,  # type: ignore[arg-type]
        events=NoEvents(),
        preparer=None,
        listen_host="127.0.0.1",
        now=lambda: "2026-12-03T10:00:00Z",
        monotonic=clock,
    )

    assert await report(actor, store, 10) == PROGRESS_INTERVAL
    clock.now += 0.25
    assert await report(actor, store, 20) == PROGRESS_INTERVAL - 0.25
    assert await published(store) == 10
    clock.now += PROGRESS_INTERVAL
    await report(actor, store, 30)
    assert await published(store) == 30
