"""``reconcile.events.EventRecorder``: v1 Events as Kubernetes' recorder writes them, repeats folded."""

from __future__ import annotations

from vmplane.api.resources import EVENTS
from vmplane.reconcile.events import EventRecorder
from vmplane.testing.clock import FakeClock
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

VMI = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm", "namespace": "ns", "uid": "uid-1"},
}


async def test_an_event_names_its_object_and_repeats_bump_the_count() -> None:
    store, clock = MemoryStore(), FakeClock()
    recorder = EventRecorder(StoreObjectClient(store), component="virt-handler", clock=clock)
    await recorder.record(VMI, type="Normal", reason="Started", message="VirtualMachineInstance started.")
    clock.advance(5)
    await recorder.record(VMI, type="Normal", reason="Started", message="VirtualMachineInstance started.")
    await recorder.record(VMI, type="Warning", reason="HotplugFailed", message="refused")
    events = {e["reason"]: e for e in (await store.list(EVENTS, "ns")).items}
    started = events["Started"]
    assert started["involvedObject"] == {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "name": "vm",
        "namespace": "ns",
        "uid": "uid-1",
    }
    assert (started["type"], started["count"], started["source"]) == (
        "Normal",
        2,
        {"component": "virt-handler"},
    )
    assert (started["firstTimestamp"], started["lastTimestamp"]) == (
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:05Z",
    )
    assert (events["HotplugFailed"]["type"], events["HotplugFailed"]["count"]) == ("Warning", 1)
