"""Wires the VM controller to its informers: which changes enqueue which VM keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vmplane.api.resources import KUBEVIRTS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.controller.vm import EventSink, VMReconciler
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller
from vmplane.store.base import JsonObject, Store

__all__ = ["ControllerManager"]


class ControllerManager:
    """The VM controller and the informers feeding it; ``start``/``stop`` run them in the current loop."""

    def __init__(
        self,
        *,
        store: Store,
        events: EventSink,
        clock: Callable[[], datetime],
        workers: int = 2,
        crash_backoff: float = 10.0,
    ) -> None:
        self.vms = Informer(store, VIRTUAL_MACHINES)
        self.vmis = Informer(store, VIRTUAL_MACHINE_INSTANCES)
        self.kubevirts = Informer(store, KUBEVIRTS)
        reconciler = VMReconciler(
            store=store,
            vms=self.vms,
            vmis=self.vmis,
            kubevirts=self.kubevirts,
            events=events,
            clock=clock,
            crash_backoff=crash_backoff,
        )
        self.controller: Controller[Key] = Controller(
            name="vm-controller", reconciler=reconciler, workers=workers
        )
        self.vms.on_change(self._enqueue)
        # A VMI has its VM's name, so a VMI change enqueues the VM of the same key.
        self.vmis.on_change(self._enqueue)
        self.kubevirts.on_change(self._enqueue_every_vm)

    def _enqueue(self, key: Key, _obj: JsonObject | None) -> None:
        self.controller.queue.add(key)

    def _enqueue_every_vm(self, _key: Key, _obj: JsonObject | None) -> None:
        for vm in self.vms.list():
            meta = vm["metadata"]
            self.controller.queue.add((meta.get("namespace", ""), meta["name"]))

    async def start(self) -> None:
        """Fill the caches, then start reconciling."""
        for informer in (self.kubevirts, self.vmis, self.vms):
            informer.start()
        for informer in (self.kubevirts, self.vmis, self.vms):
            await informer.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop reconciling and watching."""
        await self.controller.stop()
        for informer in (self.vms, self.vmis, self.kubevirts):
            await informer.stop()
