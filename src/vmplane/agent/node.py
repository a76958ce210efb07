"""This host's ``v1`` Node: what the scheduler reads (labels, taints, readiness) and capacity.

The object is built by a pure function; ``register_node`` writes it, creating or refreshing it so an
agent restarted with other labels or taints is scheduled by them. ``NodeRegistration`` watches the
Node and registers it again when it is deleted (by mistake: the scheduler places nothing on a node
without one), as a kubelet does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vmplane.agent.scheduling import SCHEDULABLE_LABEL, Taint
from vmplane.api.resources import NODES
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import AlreadyExistsError, JsonObject, NotFoundError, Store

__all__ = ["NodeRegistration", "host_capacity", "node_object", "register_node"]

log = logging.getLogger(__name__)

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def host_capacity() -> dict[str, str]:
    """CPUs and memory of this host, as a kubelet reports them."""
    memory_kib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": "110"}


def node_object(
    *,
    name: str,
    labels: Mapping[str, str],
    taints: Sequence[Taint],
    capacity: Mapping[str, str],
    now: str,
) -> JsonObject:
    """The Node, Ready, with the labels every vmplane node has (``labels`` may override them)."""
    arch = _ARCHITECTURES.get(platform.machine(), "amd64")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": arch,
                "kubernetes.io/os": "linux",
                SCHEDULABLE_LABEL: "true",
                **labels,
            },
        },
        "spec": {"taints": [t.to_wire() for t in taints]} if taints else {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AgentReady",
                    "message": "vmplane node agent is ready",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "nodeInfo": {"architecture": arch, "operatingSystem": "linux", "kubeletVersion": "vmplane"},
        },
    }


async def register_node(store: Store, node: JsonObject) -> None:
    """Create ``node``, or replace the labels, taints and status of the one stored under its name."""
    name = node["metadata"]["name"]
    with contextlib.suppress(AlreadyExistsError):
        await store.create(NODES, node)
        return
    current: dict[str, Any] = await store.get(NODES, "", name)
    metadata = {**current["metadata"], "labels": node["metadata"]["labels"]}
    updated = await store.update(NODES, {**current, "metadata": metadata, "spec": node["spec"]})
    with contextlib.suppress(NotFoundError):
        await store.update(NODES, {**updated, "status": node["status"]}, subresource="status")


class NodeRegistration:
    """Keeps this host's Node registered: a watch on Nodes re-creates it whenever it goes away.

    ``build`` makes the Node as of now (fresh heartbeat). ``start`` registers it and starts watching.
    """

    def __init__(self, *, store: Store, name: str, build: Callable[[], JsonObject]) -> None:
        self._store = store
        self._key: Key = ("", name)
        self._build = build
        self.nodes = Informer(store, NODES)
        self.controller: Controller[Key] = Controller(name="node-registration", reconciler=self, workers=1)
        self.nodes.on_change(self._changed)

    def _changed(self, key: Key, obj: JsonObject | None) -> None:
        if key == self._key and obj is None:
            self.controller.queue.add(key)

    async def start(self) -> None:
        await register_node(self._store, self._build())
        self.nodes.start()
        await self.nodes.wait_synced()
        self.controller.start()
        if self.nodes.get(*self._key) is None:  # deleted between the write and the first list
            self.controller.queue.add(self._key)

    async def stop(self) -> None:
        await self.controller.stop()
        await self.nodes.stop()

    async def reconcile(self, key: Key) -> Result:
        """Create the Node if the store has none (an error retries with backoff)."""
        try:
            await self._store.get(NODES, "", key[1])
        except NotFoundError:
            log.warning("node %s was deleted; registering it again", key[1])
            await register_node(self._store, self._build())
        return Result()
