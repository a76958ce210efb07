"""The node lifecycle controller: marks nodes that stopped renewing their Lease, and gives up their
VMIs once their guests are surely fenced. The decisions and the timing argument are in
``controller.node_health``; this module reads, remembers when each renewal was seen, and writes.

Keyed by node name. A Node, a Lease or a VMI bound to a node enqueues the node; each reconcile
comes back when the node's next deadline (unreachable, then fenced) is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.resources import LEASES, NODES, VIRTUAL_MACHINE_INSTANCES
from vmplane.client.base import ObjectClient
from vmplane.controller.node_health import (
    NODE_UNREACHABLE,
    HealthConfig,
    RenewalSeen,
    judge,
    reachable_node,
    seen,
    unreachable_node,
    unreachable_vmi,
)
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["NODE_LEASE_NAMESPACE", "NodeLifecycleController"]

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"


class NodeLifecycleController:
    """Watches Nodes, their Leases and the VMIs bound to them; ``start``/``stop`` in the current loop."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        vmis: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        config: HealthConfig | None = None,
        monotonic: Callable[[], float] | None = None,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        """``clock`` stamps what is written; ``monotonic`` (default: the running loop's clock)
        measures how long a node has been silent."""
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._clock = clock
        self._monotonic = monotonic or (lambda: asyncio.get_running_loop().time())
        self._events = events
        self._config = config or HealthConfig()
        self.nodes = informers.informer(NODES)
        self.leases = informers.informer(LEASES, field_selector=f"metadata.namespace={NODE_LEASE_NAMESPACE}")
        self._vmis = vmis
        self._seen: dict[str, RenewalSeen] = {}
        self.controller: Controller[Key] = Controller(name="node-lifecycle", reconciler=self, workers=1)
        self.nodes.on_change(lambda key: self.controller.queue.add(("", key[1])))
        self.leases.on_change(self._lease_changed)
        vmis.on_change(self._vmi_changed)

    def _lease_changed(self, key: Key) -> None:
        if key[0] == NODE_LEASE_NAMESPACE:
            self.controller.queue.add(("", key[1]))

    def _vmi_changed(self, key: Key) -> None:
        node = ((self._vmis.get(*key) or {}).get("status") or {}).get("nodeName")
        if node:
            self.controller.queue.add(("", node))

    def informers(self) -> tuple[Informer, ...]:
        """The informers this controller owns (the VMI informer is the manager's)."""
        return (self.nodes, self.leases)

    async def reconcile(self, key: Key) -> Result:
        """Judge one node and act on the verdict."""
        name = key[1]
        node = self.nodes.get("", name)
        if node is None:
            self._seen.pop(name, None)
            return Result()
        lease = self.leases.get(NODE_LEASE_NAMESPACE, name)
        renew_time = (lease or {}).get("spec", {}).get("renewTime")
        now, elapsed = self._clock(), self._monotonic()
        renewal = self._seen[name] = seen(self._seen.get(name), renew_time, elapsed)
        verdict = judge(renewal, elapsed, self._config)
        if verdict.reachable:
            updated = reachable_node(node)
            if updated != node:
                log.info("node %s renews its lease again: removing the unreachable taints", name)
                await self._write_node(node, updated)
        else:
            updated = unreachable_node(node, now)
            if updated != node:
                log.warning("node %s stopped renewing its lease: Ready=Unknown, tainted unreachable", name)
                await self._write_node(node, updated)
        if verdict.fenced:
            await self._give_up_vmis(name, now)
        return Result(requeue_after=verdict.recheck_after)

    async def _write_node(self, node: JsonObject, updated: JsonObject) -> None:
        """The taints through the main resource, the conditions through ``status``."""
        with contextlib.suppress(NotFoundError):
            stored = node
            if updated.get("spec") != node.get("spec"):
                stored = await self._client.update(NODES, {**node, "spec": updated["spec"]})
            if updated.get("status") != node.get("status"):
                await self._client.update_status(NODES, {**stored, "status": updated["status"]})

    async def _give_up_vmis(self, node: str, now: datetime) -> None:
        for vmi in self._vmis.list():
            if (vmi.get("status") or {}).get("nodeName") != node:
                continue
            status, finalizers = unreachable_vmi(vmi, now)
            meta = vmi["metadata"]
            with contextlib.suppress(NotFoundError):
                stored = vmi
                if status is not None:
                    log.warning("%s/%s: failed, node %s is fenced", meta.get("namespace"), meta["name"], node)
                    stored = await self._client.update(
                        VIRTUAL_MACHINE_INSTANCES, {**vmi, "status": status}, subresource="status"
                    )
                    await self._events.record(
                        stored,
                        type="Warning",
                        reason=NODE_UNREACHABLE,
                        message=f"The node {node} is unreachable past its fencing deadline: "
                        "its guests are stopped",
                    )
                if finalizers is not None:
                    await self._client.update(
                        VIRTUAL_MACHINE_INSTANCES,
                        {**stored, "metadata": {**stored["metadata"], "finalizers": finalizers}},
                    )
