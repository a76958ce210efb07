"""The maintenance-window controller over a store: a batch is formed from what the store holds, not
from a cache that lags it."""

from __future__ import annotations

from typing import Any

from vmplane.api.resources import MAINTENANCE_WINDOWS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.restart_approval import RESTART_APPROVAL_ANNOTATION
from vmplane.controller.maintenance import MaintenanceReconciler
from vmplane.testing.clock import START
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

PENDING = [{"path": "spec.template.spec.domain.cpu.cores", "reason": "r", "message": "m"}]


class Frozen:
    """An informer's cache as it stood at one moment: what a lagging watch still shows."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self._objects = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((namespace, name))

    def list(self) -> list[dict[str, Any]]:
        return list(self._objects.values())


class Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        self.reasons.append(reason)


async def running_vm(store: MemoryStore, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A running, Ready ``Window`` VM with a pending change, and its VMI, as stored."""
    vm = await store.create(
        VIRTUAL_MACHINES,
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": {"tier": "web"},
                "annotations": {RESTART_APPROVAL_ANNOTATION: "Window"},
            },
            "spec": {"runStrategy": "Always", "template": {"spec": {}}},
        },
    )
    status = {"printableStatus": "Running", "ready": True, "desiredGeneration": 1, "pendingChanges": PENDING}
    vm = await store.update(VIRTUAL_MACHINES, {**vm, "status": status}, subresource="status")
    vmi = await store.create(
        VIRTUAL_MACHINE_INSTANCES,
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    return vm, vmi


async def test_a_vm_reverted_after_the_cache_was_read_is_not_restarted() -> None:
    store = MemoryStore(clock=lambda: START)
    reverted, reverted_vmi = await running_vm(store, "a")
    other, other_vmi = await running_vm(store, "b")
    window = await store.create(
        MAINTENANCE_WINDOWS,
        {
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": {"days": ["Sat"], "start": "09:00", "end": "12:00", "timeZone": "UTC"},
                "selector": {"matchLabels": {"tier": "web"}},
                "maxUnavailable": 2,
            },
        },
    )
    cached_vms = Frozen(reverted, other)
    await store.update(
        VIRTUAL_MACHINES,
        {**reverted, "status": {**reverted["status"], "pendingChanges": None}},
        subresource="status",
    )
    reconciler = MaintenanceReconciler(
        client=StoreObjectClient(store),
        windows=Frozen(window),  # type: ignore[arg-type]
        vms=cached_vms,  # type: ignore[arg-type]
        vmis=Frozen(reverted_vmi, other_vmi),  # type: ignore[arg-type]
        namespaces=Frozen(),  # type: ignore[arg-type]
        events=Events(),
        clock=lambda: START,
        poll_interval=5.0,
    )

    await reconciler.reconcile(("", "nightly"))

    batch = (await store.get(MAINTENANCE_WINDOWS, "", "nightly"))["status"]["run"]["current"]["vms"]
    assert [m["name"] for m in batch] == ["b"]
    assert not (await store.get(VIRTUAL_MACHINES, "default", "a"))["status"].get("stateChangeRequests")
    assert (await store.get(VIRTUAL_MACHINES, "default", "b"))["status"]["stateChangeRequests"]
