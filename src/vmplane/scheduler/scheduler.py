"""The scheduler: binds each Pending VMI to a node that satisfies its placement, or says why none does.

Binding writes ``status.nodeName`` and phase ``Scheduled`` (the node's agent takes it from there); an
unschedulable VMI stays Pending with ``PodScheduled`` False, reason ``Unschedulable`` and the
scheduler's own message, and is tried again whenever a Node or a VMI changes (a VMI that ends
frees room on its node). A bound VMI is
never moved: placement changed live on a running VMI applies to its next start, as upstream.

A deleted VMI that was never bound has no machine anywhere, so the scheduler releases the agent's
finalizer on it; otherwise a VM stopped while unschedulable would wait forever for its VMI to go.

What each node's VMIs request is counted from the VMI cache plus the bindings this scheduler made
that the cache has not shown yet (the Kubernetes scheduler's "assumed" Pods): without them two VMIs
bound in quick succession could both take a node's last room.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.guest_resources import NodeUsage, Resources, cpu_allocation_ratio, guest_request
from vmplane.api.kubevirt import configuration_of
from vmplane.api.meta import Condition
from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.api.resources import KUBEVIRTS, NODES, VIRTUAL_MACHINE_INSTANCES
from vmplane.api.timestamps import timestamp
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus, VMIPhase
from vmplane.client.base import ObjectClient
from vmplane.reconcile.events import EventRecorder
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key, key_of
from vmplane.reconcile.loop import Controller, Result
from vmplane.rollout.conditions import merge_conditions
from vmplane.scheduler.scheduling import choose_node, unschedulable_message
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["POD_SCHEDULED", "UNSCHEDULABLE", "Scheduler"]

POD_SCHEDULED = "PodScheduled"
UNSCHEDULABLE = "Unschedulable"


def _unbound(obj: JsonObject | None) -> bool:
    return obj is not None and not (obj.get("status") or {}).get("nodeName")


class Scheduler:
    """Binds Pending VMIs to Nodes; ``start``/``stop`` run it in the current loop."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        clock: Callable[[], datetime],
        events: EventSink | None = None,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._clock = clock
        self._events: EventSink = events or EventRecorder(client, component="default-scheduler", clock=clock)
        self.vmis = informers.informer(VIRTUAL_MACHINE_INSTANCES)
        self.nodes = informers.informer(NODES)
        self.kubevirts = informers.informer(KUBEVIRTS)
        # Bound by us, not yet bound in the cache: key -> (node, request).
        self._assumed: dict[Key, tuple[str, Resources]] = {}
        # One worker: binding decisions are cheap, and one at a time they never race for a node.
        self.controller: Controller[Key] = Controller(name="scheduler", reconciler=self, workers=1)
        self._usage = NodeUsage(self.vmis)
        self.vmis.on_change(self._vmi_changed)
        self.nodes.on_change(self._nodes_changed)

    def _vmi_changed(self, key: Key) -> None:
        obj = self.vmis.get(*key)
        if obj is None or not _unbound(obj):
            self._assumed.pop(key, None)
        if _unbound(obj):
            self.controller.queue.add(key)
        elif obj is None or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._nodes_changed(key)  # room freed on a node

    def _nodes_changed(self, _key: Key) -> None:
        for vmi in self.vmis.list():
            if _unbound(vmi):
                self.controller.queue.add(key_of(vmi))

    async def start(self) -> None:
        """Fill the caches, then start binding."""
        for informer in (self.kubevirts, self.nodes, self.vmis):
            informer.start()
        for informer in (self.kubevirts, self.nodes, self.vmis):
            await informer.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop binding and watching."""
        await self.controller.stop()
        for informer in (self.vmis, self.nodes, self.kubevirts):
            await informer.stop()

    async def reconcile(self, key: Key) -> Result:
        """Bind one VMI if it is Pending and unbound (a fresh read: the cache may lag our own writes)."""
        try:
            raw = await self._client.get(VIRTUAL_MACHINE_INSTANCES, *key)
        except NotFoundError:
            return Result()
        vmi = VirtualMachineInstance.model_validate(raw)
        status = vmi.status or VirtualMachineInstanceStatus()
        if status.node_name:
            return Result()
        if vmi.metadata.deletion_timestamp:
            await self._release(vmi, raw)
            return Result()
        if status.phase not in (VMIPhase.PENDING, None):
            return Result()
        nodes = self.nodes.list()
        ratio = cpu_allocation_ratio(configuration_of(self.kubevirts.list()))
        used = self._used(ratio, exclude=key)
        node = choose_node(vmi.spec, nodes, used=used, cpu_allocation_ratio=ratio)
        if node is None:
            condition = Condition(
                type=POD_SCHEDULED,
                status="False",
                reason=UNSCHEDULABLE,
                message=unschedulable_message(vmi.spec, nodes, used=used, cpu_allocation_ratio=ratio),
            )
            update: dict[str, object] = {}
        else:
            condition = Condition(type=POD_SCHEDULED, status="True")
            update = {"node_name": node, "phase": VMIPhase.SCHEDULED}
        now = timestamp(self._clock())
        others = [c for c in status.conditions or () if c.type != POD_SCHEDULED]
        conditions = merge_conditions(status.conditions or (), [*others, condition], now=now)
        new_status = status.model_copy(update={**update, "conditions": conditions})
        if new_status == status:
            return Result()
        stored = await self._client.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "status": new_status.to_wire()}, subresource="status"
        )
        if node is not None:
            self._assumed[key] = (node, guest_request(vmi.spec, cpu_allocation_ratio=ratio))
            message = f"Successfully assigned {key[0]}/{key[1]} to {node}"
            await self._events.record(stored, type="Normal", reason="Scheduled", message=message)
        else:
            await self._events.record(
                stored, type="Warning", reason="FailedScheduling", message=condition.message or ""
            )
        return Result()

    def _used(self, ratio: int, *, exclude: Key) -> dict[str, Resources]:
        """What each node's VMIs request: the cache's bound VMIs plus our assumed bindings."""
        used = self._usage.by_node(cpu_allocation_ratio=ratio, exclude=exclude)
        for key, (node, request) in self._assumed.items():
            if key != exclude:
                used[node] = used.get(node, Resources()) + request
        return used

    async def _release(self, vmi: VirtualMachineInstance, raw: JsonObject) -> None:
        finalizers = list(vmi.metadata.finalizers or ())
        if MACHINE_FINALIZER not in finalizers:
            return
        finalizers.remove(MACHINE_FINALIZER)
        with contextlib.suppress(NotFoundError):
            await self._client.update(
                VIRTUAL_MACHINE_INSTANCES, {**raw, "metadata": {**raw["metadata"], "finalizers": finalizers}}
            )
