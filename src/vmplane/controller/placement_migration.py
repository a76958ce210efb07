"""Starts the migration of a guest whose node its placement no longer admits, where it is opted in.

``rollout.placement_migration`` decides; this shell reads the VM, the KubeVirt object and the node
from the manager's caches and, only once those say a migration may be due, the VMI and the
namespace's migrations afresh (a cache one migration behind would start a second one), creates the
migration, and records ``PlacementMigration`` on the VM; once the violation is gone it deletes a
placement migration not yet scheduled (``PlacementMigrationWithdrawn``). The VM controller reports
the violation (``status.pendingChanges``, ``PlacementViolated``) whether or not anything is opted in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.kubevirt import configuration_of, installation
from vmplane.api.migration import VirtualMachineInstanceMigration
from vmplane.api.ownership import controller_of
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.client.base import InvalidError, ObjectClient
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.placement import PlacementViolation, placement_violation
from vmplane.rollout.placement_migration import RETRY_AFTER_FAILURE, opted_in, placement_migration, withdrawn
from vmplane.store.base import AlreadyExistsError, JsonObject, NotFoundError

__all__ = ["PlacementMigrationReconciler"]

log = logging.getLogger(__name__)


class PlacementMigrationReconciler:
    """Reconciles one VM (keyed by namespace and name): migrates its guest off an excluding node."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        vms: Informer,
        vmis: Informer,
        nodes: Informer,
        kubevirts: Informer,
        migrations: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._vms = vms
        self._vmis = vmis
        self._nodes = nodes
        self._kubevirts = kubevirts
        self._migrations = migrations
        self._events = events
        self._clock = clock

    async def reconcile(self, key: Key) -> Result:
        """Create the VM's placement migration if one is due."""
        raw_vm, cached = self._vms.get(*key), self._vmis.get(*key)
        if raw_vm is None or cached is None or raw_vm["metadata"].get("deletionTimestamp"):
            return Result()
        kubevirts = self._kubevirts.list()
        kubevirt = installation(kubevirts)
        kubevirt_annotations = (kubevirt.get("metadata") or {}).get("annotations") if kubevirt else None
        opted = opted_in(raw_vm["metadata"].get("annotations"), kubevirt_annotations)
        if not opted:
            return Result()  # nothing to read afresh: only the report, which is the VM controller's
        drain_key = configuration_of(kubevirts).migration_limits.node_drain_taint_key
        namespace, name = key
        if self._violation(VirtualMachineInstance.model_validate(cached), drain_key) is None:
            await self._withdraw(raw_vm, VirtualMachineInstance.model_validate(cached), namespace)
            return Result()
        # Fresh, migrations first: a migration that ended shows on the VMI read after it.
        listed = await self._client.list(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, namespace)
        try:
            raw_vmi = await self._client.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError:
            return Result()
        ref = controller_of(raw_vmi.get("metadata") or {})
        if ref is None or ref.get("uid") != raw_vm["metadata"].get("uid"):
            return Result()  # not this VM's guest
        vmi = VirtualMachineInstance.model_validate(raw_vmi)
        decision = placement_migration(
            vmi=vmi,
            violation=self._violation(vmi, drain_key),
            opted=opted,
            migrations=[VirtualMachineInstanceMigration.model_validate(m) for m in listed.items],
            now=self._clock(),
        )
        if decision.create is None:
            return Result(requeue_after=decision.retry_after)
        return await self._create(raw_vm, decision.create)

    async def _withdraw(self, raw_vm: JsonObject, vmi: VirtualMachineInstance, namespace: str) -> None:
        """Delete the placement migrations of ``vmi`` that are no longer needed and not yet scheduled."""
        cached = [VirtualMachineInstanceMigration.model_validate(m) for m in self._migrations.list(namespace)]
        for name in withdrawn(vmi=vmi, migrations=cached):
            try:
                await self._client.delete(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, namespace, name)
            except NotFoundError:
                continue
            await self._events.record(
                raw_vm,
                type="Normal",
                reason="PlacementMigrationWithdrawn",
                message=f"the guest's node matches its placement again: deleted migration {name}",
            )

    def _violation(self, vmi: VirtualMachineInstance, drain_key: str) -> PlacementViolation | None:
        node_name = vmi.status.node_name if vmi.status is not None else None
        return placement_violation(
            vmi=vmi,
            node=self._nodes.get("", node_name) if node_name else None,
            desired=None,
            drain_taint_key=drain_key,
        )

    async def _create(self, raw_vm: JsonObject, migration: JsonObject) -> Result:
        name = migration["metadata"]["name"]
        try:
            await self._client.create(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, migration)
        except AlreadyExistsError:
            return Result()  # this attempt was created already; its watch event brings us back
        except InvalidError as err:
            # Admission refused it (the VMI became unmigratable, or another migration started).
            await self._events.record(
                raw_vm, type="Warning", reason="FailedPlacementMigration", message=str(err)
            )
            return Result(requeue_after=RETRY_AFTER_FAILURE)
        meta = raw_vm["metadata"]
        log.info(
            "%s/%s: migrating off a node its placement excludes (%s)",
            meta.get("namespace"),
            meta["name"],
            name,
        )
        await self._events.record(
            raw_vm,
            type="Normal",
            reason="PlacementMigration",
            message=f"the guest's node no longer matches its placement: started migration {name}",
        )
        return Result()
