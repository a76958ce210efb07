"""The migration controller: moves each ``VirtualMachineInstanceMigration`` through upstream's phases.

It lives beside the scheduler because choosing a migration's target is scheduling (upstream's
target is a pod the kube-scheduler places) and it runs in the controller process next to it.

What to do is ``scheduler.migration_plan.decide_through``'s (limits, target choice, mirroring what
the agents write into the VMI's ``status.migrationState``); this shell reads the migration, its VMI
(fresh: the agents write it concurrently), the nodes and the other migrations, writes what the
decision says, and records ``SuccessfulMigration`` / ``FailedMigration`` events as upstream's
virt-controller does. The cluster's ``spec.configuration.migrations`` goes into the VMI's migration
state with the hand-over, so both agents apply the same limits.

A migration holds upstream's finalizer while it is in flight: deleting it (``virtctl
migrate-cancel``) asks the agents to abort, and the object goes once the migration has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.guest_resources import NodeUsage, Resources, cpu_allocation_ratio, guest_request
from vmplane.api.kubevirt import configuration_of
from vmplane.api.migration import (
    ACTIVE_PHASES,
    MigrationPhase,
    VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationState,
    VirtualMachineInstanceMigrationStatus,
)
from vmplane.api.resources import (
    KUBEVIRTS,
    NODES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
)
from vmplane.api.timestamps import timestamp
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceSpec
from vmplane.client.base import ObjectClient
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key, key_of
from vmplane.reconcile.loop import Controller, Result
from vmplane.scheduler.migration_plan import MigrationDecision, decide_through
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["MIGRATION_FINALIZER", "MigrationController"]

log = logging.getLogger(__name__)

#: Upstream's finalizer on migration objects (``kubevirt.io/migrationJobFinalize``).
MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"
#: How often a migration waiting for a limit or a target is looked at again.
_WAIT_RETRY = 2.0


class MigrationController:
    """Drives every migration of the cluster (its ``controller``, run in the controller process)."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        events: EventSink,
        clock: Callable[[], datetime],
        informers: SharedInformerFactory | None = None,
    ) -> None:
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._events = events
        self._clock = clock
        self.migrations = informers.informer(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS)
        self.vmis = informers.informer(VIRTUAL_MACHINE_INSTANCES)
        self._usage = NodeUsage(self.vmis)
        self.nodes = informers.informer(NODES)
        self.kubevirts = informers.informer(KUBEVIRTS)
        self.controller: Controller[Key] = Controller(name="migration-controller", reconciler=self, workers=1)
        self.migrations.on_change(self.controller.queue.add)
        self.vmis.on_change(self._vmi_changed)

    def _vmi_changed(self, key: Key) -> None:
        namespace, name = key
        for migration in self.migrations.list():
            meta = migration.get("metadata") or {}
            if meta.get("namespace") == namespace and (migration.get("spec") or {}).get("vmiName") == name:
                self.controller.queue.add(key_of(migration))

    async def start(self) -> None:
        """Fill the caches (shared informers are started once, by whichever user comes first), then work."""
        informers = (self.kubevirts, self.nodes, self.vmis, self.migrations)
        for informer in informers:
            informer.start()
        for informer in informers:
            await informer.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop working and watching."""
        await self.controller.stop()
        for informer in (self.migrations, self.vmis, self.nodes, self.kubevirts):
            await informer.stop()

    async def reconcile(self, key: Key) -> Result:
        try:
            raw = await self._client.get(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, *key)
        except NotFoundError:
            return Result()
        migration = VirtualMachineInstanceMigration.model_validate(raw)
        namespace = migration.metadata.namespace or "default"
        try:
            vmi_raw: JsonObject | None = await self._client.get(
                VIRTUAL_MACHINE_INSTANCES, namespace, migration.spec.vmi_name or ""
            )
        except NotFoundError:
            vmi_raw = None
        vmi = VirtualMachineInstance.model_validate(vmi_raw) if vmi_raw is not None else None
        phase = (migration.status.phase if migration.status else None) or MigrationPhase.PENDING
        finalizers = list(migration.metadata.finalizers or ())
        live = phase in ACTIVE_PHASES and not migration.metadata.deletion_timestamp
        if live and MIGRATION_FINALIZER not in finalizers:
            raw = await self._set_finalizers(raw, [*finalizers, MIGRATION_FINALIZER])
        config = configuration_of(self.kubevirts.list())
        ratio = cpu_allocation_ratio(config)
        decision = decide_through(
            migration,
            vmi,
            nodes=self.nodes.list(),
            used=self._used(ratio, exclude=(namespace, migration.spec.vmi_name or "")),
            others=[
                VirtualMachineInstanceMigration.model_validate(m)
                for m in self.migrations.list()
                if (m.get("metadata") or {}).get("uid") != migration.metadata.uid
            ],
            limits=config.migration_limits,
        )
        if decision.vmi_state is not None and vmi_raw is not None:
            state = decision.vmi_state
            if state.migration_configuration is None and config.migrations is not None:
                state = state.model_copy(update={"migration_configuration": config.migrations})
            await self._write_vmi_state(vmi_raw, state)
        raw = await self._write_status(raw, migration, decision)
        if migration.metadata.deletion_timestamp:
            await self._release_when_ended(raw, vmi)
        return Result(requeue_after=_WAIT_RETRY) if decision.waiting else Result()

    def _used(self, ratio: int, *, exclude: tuple[str, str]) -> dict[str, Resources]:
        """What each node's VMIs request, counting migrations in flight on their target as well (the
        target holds the guest's room from its hand-over on, as upstream's target pod does)."""
        vmis = self.vmis.list()
        used = self._usage.by_node(cpu_allocation_ratio=ratio, exclude=exclude)
        for vmi in vmis:
            state = (vmi.get("status") or {}).get("migrationState") or {}
            target = state.get("targetNode")
            if isinstance(target, str) and target and not (state.get("completed") or state.get("failed")):
                spec = VirtualMachineInstanceSpec.model_validate(vmi.get("spec") or {})
                used[target] = used.get(target, Resources()) + guest_request(spec, cpu_allocation_ratio=ratio)
        return used

    async def _write_vmi_state(
        self, vmi_raw: JsonObject, state: VirtualMachineInstanceMigrationState
    ) -> None:
        status = {**(vmi_raw.get("status") or {}), "migrationState": state.to_wire()}
        await self._client.update(
            VIRTUAL_MACHINE_INSTANCES, {**vmi_raw, "status": status}, subresource="status"
        )

    async def _write_status(
        self, raw: JsonObject, migration: VirtualMachineInstanceMigration, decision: MigrationDecision
    ) -> JsonObject:
        before = migration.status or VirtualMachineInstanceMigrationStatus()
        update: dict[str, object] = {}
        if decision.migration_state is not None and decision.migration_state != before.migration_state:
            update["migration_state"] = decision.migration_state
        now = timestamp(self._clock())
        stamps = list(before.phase_transition_timestamps or ())
        if before.phase is None:  # a new migration is Pending first, whatever comes next
            stamps.append({"phase": MigrationPhase.PENDING.value, "phaseTransitionTimestamp": now})
            update["phase"] = MigrationPhase.PENDING
        entered = [*decision.passed, *([decision.phase] if decision.phase is not None else [])]
        for phase in entered:
            if phase is not (update.get("phase") or before.phase or MigrationPhase.PENDING):
                update["phase"] = phase
                stamps.append({"phase": phase.value, "phaseTransitionTimestamp": now})
        if "phase" in update:
            update["phase_transition_timestamps"] = stamps
        if not update:
            return raw
        status = before.model_copy(update=update)
        stored = await self._client.update(
            VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, {**raw, "status": status.to_wire()}, subresource="status"
        )
        if update.get("phase") is MigrationPhase.SUCCEEDED:
            message = "Source node reported migration succeeded"
            await self._events.record(stored, type="Normal", reason="SuccessfulMigration", message=message)
        elif update.get("phase") is MigrationPhase.FAILED:
            message = f"Migration failed: {decision.failure or 'unknown reason'}"
            await self._events.record(stored, type="Warning", reason="FailedMigration", message=message)
        return stored

    async def _release_when_ended(self, raw: JsonObject, vmi: VirtualMachineInstance | None) -> None:
        migration = VirtualMachineInstanceMigration.model_validate(raw)
        finalizers = list(migration.metadata.finalizers or ())
        if MIGRATION_FINALIZER not in finalizers:
            return
        state = vmi.status.migration_state if vmi is not None and vmi.status is not None else None
        ours = state is not None and state.migration_uid == migration.metadata.uid
        phase = migration.status.phase if migration.status else None
        ended = phase not in ACTIVE_PHASES or not ours or bool(state and (state.completed or state.failed))
        if ended or phase in (MigrationPhase.PENDING, MigrationPhase.SCHEDULING, MigrationPhase.SCHEDULED):
            finalizers.remove(MIGRATION_FINALIZER)
            await self._set_finalizers(raw, finalizers)

    async def _set_finalizers(self, raw: JsonObject, finalizers: list[str]) -> JsonObject:
        metadata = {**raw["metadata"], "finalizers": finalizers}
        return await self._client.update(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, {**raw, "metadata": metadata})
