"""The ``KubeVirt`` object's status: the installation's health, as virt-operator reports it.

``kubevirt_status`` decides the status (pure); ``KubeVirtStatusController`` writes it whenever a
KubeVirt object or a Node changes and the decision differs from what is stored. It runs beside the
VM controller, the scheduler and the node agent in ``vmplane serve`` (``app.ControlPlane``), so a
status it writes means those are up: ``phase: Deployed`` and ``Available`` True with upstream's
reason and message (``AllComponentsReady``, ``All components are ready.``), ``Progressing`` False
(vmplane installs nothing step by step). ``Degraded`` is True while no Node is Ready, since then no
guest can be scheduled; it is a vmplane reason (upstream's operator watches its own pods instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from vmplane import __version__
from vmplane.api.resources import KUBEVIRTS, NODES
from vmplane.api.timestamps import timestamp
from vmplane.client.base import ObjectClient
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject, NotFoundError

__all__ = [
    "KUBEVIRT_VERSION",
    "NO_READY_NODE",
    "READY",
    "KubeVirtStatusController",
    "kubevirt_status",
    "ready_nodes",
]

log = logging.getLogger(__name__)

#: ``observedKubeVirtVersion``/``operatorVersion``: vmplane's version, spelled as upstream's tags.
KUBEVIRT_VERSION = f"v{__version__}"
#: Upstream's ``ConditionReasonDeploymentReady`` and its message.
READY = ("AllComponentsReady", "All components are ready.")
#: Upstream's ``ConditionReasonDeploymentCreated`` and its message.
CREATED = ("AllResourcesCreated", "All resources were created.")
NO_READY_NODE = ("NoReadyNode", "No node is Ready: virtual machines cannot be scheduled.")


def ready_nodes(nodes: Sequence[JsonObject]) -> int:
    """How many of ``nodes`` have a Ready condition with status True."""

    def ready(node: JsonObject) -> bool:
        status = node.get("status")
        conditions = status.get("conditions") if isinstance(status, dict) else None
        return isinstance(conditions, list) and any(
            isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )

    return sum(1 for node in nodes if ready(node))


def _conditions(ready: int) -> list[tuple[str, str, str, str]]:
    degraded = ("Degraded", "True", *NO_READY_NODE) if ready == 0 else ("Degraded", "False", *READY)
    return [
        ("Available", "True", *READY),
        ("Progressing", "False", *READY),
        degraded,
        ("Created", "True", *CREATED),
    ]


def kubevirt_status(
    *,
    kubevirt: JsonObject,
    ready: int,
    now: str,
    architecture: str = "amd64",
) -> JsonObject:
    """The status of ``kubevirt`` with ``ready`` Nodes Ready; a condition keeps its stored
    ``lastTransitionTime`` (and ``lastProbeTime``) while its status, reason and message hold."""
    previous = kubevirt.get("status")
    stored = previous.get("conditions") if isinstance(previous, Mapping) else None
    before = {c.get("type"): c for c in stored if isinstance(c, dict)} if isinstance(stored, list) else {}
    conditions = []
    for kind, status, reason, message in _conditions(ready):
        old = before.get(kind) or {}
        same = (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message)
        since = old.get("lastTransitionTime") if same and old.get("lastTransitionTime") else now
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastProbeTime": old.get("lastProbeTime", since) if same else now,
                "lastTransitionTime": since,
            }
        )
    return {
        "phase": "Deployed",
        "conditions": conditions,
        "observedGeneration": int(kubevirt.get("metadata", {}).get("generation") or 1),
        "observedKubeVirtVersion": KUBEVIRT_VERSION,
        "targetKubeVirtVersion": KUBEVIRT_VERSION,
        "operatorVersion": KUBEVIRT_VERSION,
        "defaultArchitecture": architecture,
        "outdatedVirtualMachineInstanceWorkloads": 0,
    }


class KubeVirtStatusController:
    """Keeps every KubeVirt object's status equal to ``kubevirt_status`` of the cluster as it is."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        clock: Callable[[], datetime],
        architecture: str = "amd64",
        informers: SharedInformerFactory | None = None,
    ) -> None:
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._clock = clock
        self._architecture = architecture
        self.kubevirts = informers.informer(KUBEVIRTS)
        self.nodes = informers.informer(NODES)
        self.controller: Controller[Key] = Controller(name="kubevirt-status", reconciler=self, workers=1)
        self.kubevirts.on_change(self._enqueue)
        self.nodes.on_change(self._enqueue_every_kubevirt)

    def _enqueue(self, key: Key) -> None:
        self.controller.queue.add(key)

    def _enqueue_every_kubevirt(self, _key: Key) -> None:
        for kubevirt in self.kubevirts.list():
            meta = kubevirt["metadata"]
            self.controller.queue.add((meta.get("namespace", ""), meta["name"]))

    async def start(self) -> None:
        """Fill the caches, then reconcile every KubeVirt object."""
        for informer in (self.kubevirts, self.nodes):
            informer.start()
        for informer in (self.kubevirts, self.nodes):
            await informer.wait_synced()
        self.controller.start()
        self._enqueue_every_kubevirt(("", ""))

    async def stop(self) -> None:
        await self.controller.stop()
        for informer in (self.nodes, self.kubevirts):
            await informer.stop()

    async def reconcile(self, key: Key) -> Result:
        """Write the status the cluster calls for, when it differs from the stored one (a conflict
        raises and is retried with backoff)."""
        try:
            kubevirt = await self._client.get(KUBEVIRTS, *key)
        except NotFoundError:
            return Result()
        status = kubevirt_status(
            kubevirt=kubevirt,
            ready=ready_nodes(self.nodes.list()),
            now=timestamp(self._clock()),
            architecture=self._architecture,
        )
        if status != kubevirt.get("status"):
            log.debug("kubevirt %s/%s: status %s", *key, status["conditions"])
            try:
                await self._client.update(KUBEVIRTS, {**kubevirt, "status": status}, subresource="status")
            except NotFoundError:
                return Result()
        return Result()
