"""The scheduler: gives each pending VMI a node that satisfies its placement, or says why none does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vmplane.agent.scheduling import choose_node, unschedulable_message
from vmplane.api.meta import Condition
from vmplane.api.resources import NODES, VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.rollout.conditions import merge_conditions
from vmplane.store.base import JsonObject, Store

__all__ = ["POD_SCHEDULED", "Scheduler"]

POD_SCHEDULED = "PodScheduled"


class Scheduler:
    """Binds Pending VMIs to nodes (``status.nodeName``, phase ``Scheduled``)."""

    def __init__(self, *, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self.vmis = Informer(store, VIRTUAL_MACHINE_INSTANCES)
        self.nodes = Informer(store, NODES)
        self.controller: Controller[Key] = Controller(name="scheduler", reconciler=self, workers=1)
        self.vmis.on_change(lambda key, _obj: self.controller.queue.add(key))
        self.nodes.on_change(self._nodes_changed)

    def _nodes_changed(self, _key: Key, _obj: JsonObject | None) -> None:
        for vmi in self.vmis.list():
            if not (vmi.get("status") or {}).get("nodeName"):
                meta = vmi["metadata"]
                self.controller.queue.add((meta.get("namespace", ""), meta["name"]))

    async def reconcile(self, key: Key) -> Result:
        """Bind one VMI if it is pending and unbound."""
        raw = self.vmis.get(*key)
        if raw is None:
            return Result()
        vmi = VirtualMachineInstance.model_validate(raw)
        status = vmi.status
        if (
            vmi.metadata.deletion_timestamp
            or status is None
            or status.node_name
            or status.phase not in (VMIPhase.PENDING, None)
        ):
            return Result()
        nodes = self.nodes.list()
        node = choose_node(vmi.spec, nodes)
        now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        if node is None:
            condition = Condition(
                type=POD_SCHEDULED,
                status="False",
                reason="Unschedulable",
                message=unschedulable_message(vmi.spec, nodes),
            )
            update: dict[str, object] = {}
        else:
            condition = Condition(type=POD_SCHEDULED, status="True")
            update = {"node_name": node, "phase": VMIPhase.SCHEDULED}
        others = [c for c in status.conditions or () if c.type != POD_SCHEDULED]
        conditions = merge_conditions(status.conditions or (), [*others, condition], now=now)
        new_status = status.model_copy(update={**update, "conditions": conditions})
        if new_status != status:
            await self._store.update(
                VIRTUAL_MACHINE_INSTANCES, {**raw, "status": new_status.to_wire()}, subresource="status"
            )
        return Result()

    async def start(self) -> None:
        """Fill the caches and start binding."""
        for informer in (self.nodes, self.vmis):
            informer.start()
            await informer.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop binding and watching."""
        await self.controller.stop()
        for informer in (self.vmis, self.nodes):
            await informer.stop()
