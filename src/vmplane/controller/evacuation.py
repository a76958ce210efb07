"""The evacuation controller: creates the migrations that empty a node carrying the drain taint.

What to migrate is ``controller.evacuation_plan.plan_evacuation``'s; this shell is keyed by node
name, as upstream's: a Node, a VMI bound to it or a migration of one of its VMIs enqueues the node.
The node's VMIs and the migrations are listed fresh from the API before deciding, so a reconcile
right after a creation, or right after a migration ended, never creates a second migration for the
same VMI from a cache that is behind (upstream keeps creation expectations for the same reason).
Moving the guests is the migration controller's.
"""

from __future__ import annotations

import logging
import secrets

from vmplane.api.events import EventSink
from vmplane.api.kubevirt import configuration_of
from vmplane.api.migration import VirtualMachineInstanceMigration
from vmplane.api.resources import (
    KUBEVIRTS,
    NODES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
)
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.client.base import ObjectClient
from vmplane.controller.evacuation_plan import (
    EVACUATION_MIGRATION_ANNOTATION,
    drain_taint_on,
    evacuation_migration,
    plan_evacuation,
)
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject

__all__ = ["EvacuationController"]

log = logging.getLogger(__name__)

#: The characters of the API server's ``generateName`` suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


class EvacuationController:
    """Evacuates drained nodes (its ``controller``, run by the controller manager)."""

    def __init__(
        self, *, client: ObjectClient, events: EventSink, informers: SharedInformerFactory | None = None
    ) -> None:
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._events = events
        self.nodes = informers.informer(NODES)
        self.vmis = informers.informer(VIRTUAL_MACHINE_INSTANCES)
        self.migrations = informers.informer(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS)
        self.kubevirts = informers.informer(KUBEVIRTS)
        self.controller: Controller[Key] = Controller(
            name="evacuation-controller", reconciler=self, workers=1
        )
        self.nodes.on_change(self.controller.queue.add)
        self.vmis.on_change(self._vmi_changed)
        self.migrations.on_change(self._migration_changed)
        self.kubevirts.on_change(self._enqueue_every_node)

    def informers(self) -> tuple[Informer, ...]:
        """The informers this controller owns (the others are the manager's too)."""
        return (self.migrations,)

    def _enqueue_node_of(self, vmi: JsonObject | None) -> None:
        node = ((vmi or {}).get("status") or {}).get("nodeName")
        if isinstance(node, str) and node:
            self.controller.queue.add(("", node))

    def _vmi_changed(self, key: Key) -> None:
        self._enqueue_node_of(self.vmis.get(*key))

    def _migration_changed(self, key: Key) -> None:
        migration = self.migrations.get(*key)
        if migration is None:
            return
        # The evacuated node is named on our own migrations; a finished one frees a spot there.
        source = ((migration.get("metadata") or {}).get("annotations") or {}).get(
            EVACUATION_MIGRATION_ANNOTATION
        )
        if isinstance(source, str) and source:
            self.controller.queue.add(("", source))
        vmi_name = (migration.get("spec") or {}).get("vmiName")
        if isinstance(vmi_name, str):
            self._enqueue_node_of(self.vmis.get(key[0], vmi_name))

    def _enqueue_every_node(self, _key: Key) -> None:
        for node in self.nodes.list():
            self.controller.queue.add(("", node["metadata"]["name"]))

    async def reconcile(self, key: Key) -> Result:
        node = self.nodes.get(*key)
        if node is None:
            return Result()
        name = node["metadata"]["name"]
        config = configuration_of(self.kubevirts.list())
        if drain_taint_on(node, config.migration_limits.node_drain_taint_key) is None:
            return Result()  # nothing to evacuate: no fresh lists on every node heartbeat
        on_node = await self._client.list(VIRTUAL_MACHINE_INSTANCES, field_selector=f"status.nodeName={name}")
        vmis = [VirtualMachineInstance.model_validate(v) for v in on_node.items]
        listed = await self._client.list(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS)
        migrations = [VirtualMachineInstanceMigration.model_validate(m) for m in listed.items]
        plan = plan_evacuation(node, vmis=vmis, migrations=migrations, config=config)
        for namespace, vmi_name in plan.not_migratable:
            await self._record(
                namespace,
                vmi_name,
                type="Normal",
                reason="FailedCreate",
                message="VirtualMachineInstance is not migrateable",
            )
        for namespace, vmi_name in plan.migrate:
            body = evacuation_migration(namespace, vmi_name, node=name, suffix=_suffix())
            try:
                created = await self._client.create(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, body)
            except Exception as err:
                await self._record(
                    namespace,
                    vmi_name,
                    type="Warning",
                    reason="FailedCreate",
                    message=f"Error creating a Migration: {err}",
                )
                raise
            log.info("evacuating %s/%s from %s: %s", namespace, vmi_name, name, created["metadata"]["name"])
            await self._record(
                namespace,
                vmi_name,
                type="Normal",
                reason="SuccessfulCreate",
                message=f"Created Migration {created['metadata']['name']}",
            )
        return Result(requeue_after=plan.retry_after)

    async def _record(self, namespace: str, name: str, *, type: str, reason: str, message: str) -> None:
        vmi = self.vmis.get(namespace, name)
        if vmi is not None:
            await self._events.record(vmi, type=type, reason=reason, message=message)
