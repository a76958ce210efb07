"""The VM controller: starts and stops VMIs per run strategy, and rolls VM changes out to them.

Each reconcile re-reads the VM, its VMI and the cluster configuration from the informers' caches,
claims the VMI as upstream's controller-ref manager does (``api.ownership.claim``: it acts only on a
VMI whose controller reference has the VM's uid, adopts an uncontrolled VMI of its name, leaves
every other VMI alone), asks ``run_strategy.decide`` whether to start, stop or replace the VMI
and acts on that, asks the pure planner what to do, writes the live changes into the VMI spec
(the node agent turns them into hotplugs), and writes the VM's status derived by ``vm_status.derive_status``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration
from vmplane.api.ownership import (
    ORPHAN_FINALIZER,
    Claim,
    adopted,
    claim,
    collectable,
    controller_reference,
    orphaned,
)
from vmplane.api.resources import CONTROLLER_REVISIONS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.client.base import ObjectClient
from vmplane.controller.boot import boot_objects, revision_prefix
from vmplane.controller.run_strategy import (
    FINAL_PHASES,
    RunAction,
    RunConfig,
    RunDecision,
    decide,
    format_time,
)
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.effective import effective_spec
from vmplane.rollout.plan import Plan, plan, vm_path
from vmplane.rollout.vm_status import Observation, derive_status
from vmplane.store.base import AlreadyExistsError, JsonObject, NotFoundError

__all__ = ["EventSink", "VMReconciler", "cluster_configuration"]

log = logging.getLogger(__name__)

VM_GROUP = "kubevirt.io"
VM_KIND = "VirtualMachine"


class EventSink(Protocol):
    """Where the controller reports what happened (``reconcile.events.EventRecorder``)."""

    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record one event about ``obj``."""
        ...


def cluster_configuration(kubevirts: Informer) -> KubeVirtConfiguration:
    """The configuration of the installation's KubeVirt object (defaults when there is none)."""
    objects = kubevirts.list()
    if not objects:
        return KubeVirtConfiguration()
    chosen = kubevirts.get("kubevirt", "kubevirt") or objects[0]
    return KubeVirt.model_validate(chosen).spec.configuration


def _phase(vmi: VirtualMachineInstance | None) -> VMIPhase | None:
    return vmi.status.phase if vmi is not None and vmi.status is not None else None


class VMReconciler:
    """Reconciles one VM (keyed by namespace and name) with its VMI."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        vms: Informer,
        vmis: Informer,
        kubevirts: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        crash_backoff: float = 10.0,
    ) -> None:
        self._client = client
        self._vms = vms
        self._vmis = vmis
        self._kubevirts = kubevirts
        self._events = events
        self._clock = clock
        self._run_config = RunConfig(crash_backoff=crash_backoff)

    async def reconcile(self, key: Key) -> Result:
        """Bring one VM's VMI and status in line with its spec."""
        namespace, name = key
        raw_vm = self._vms.get(namespace, name)
        raw_vmi = self._vmis.get(namespace, name)
        if raw_vm is None:
            if raw_vmi is not None:
                await self._collect_if_owner_gone(raw_vmi)
            return Result()
        vm = VirtualMachine.model_validate(raw_vm)
        raw_vmi, occupied = await self._claim(vm, raw_vmi)
        vmi = VirtualMachineInstance.model_validate(raw_vmi) if raw_vmi is not None else None
        result, decision = await self._run(vm, raw_vmi, vmi, occupied=occupied)
        if decision.action is RunAction.ORPHAN:
            return result  # the VM is going: no rollout, no status
        config = cluster_configuration(self._kubevirts)
        rollout = await self._rollout(vm, vmi, config)
        await self._report_pending(vm, rollout)
        observation = Observation(vmi, rollout, decision.crash_looping, format_time(self._clock()))
        new_status = derive_status(vm.model_copy(update={"status": decision.status}), observation)
        if new_status != vm.status:
            await self._client.update(
                VIRTUAL_MACHINES, {**vm.to_wire(), "status": new_status.to_wire()}, subresource="status"
            )
        return result

    async def _claim(self, vm: VirtualMachine, raw_vmi: JsonObject | None) -> tuple[JsonObject | None, bool]:
        """The VMI of the VM's name if this VM controls it (adopting an orphan), and whether a VMI
        this VM does not control holds the name (so none can be started)."""
        if raw_vmi is None:
            return None, False
        assert vm.metadata.uid is not None
        verdict = claim(
            owner_uid=vm.metadata.uid, owner_deleting=bool(vm.metadata.deletion_timestamp), dependent=raw_vmi
        )
        if verdict is Claim.OWNED:
            return raw_vmi, False
        if verdict is Claim.ADOPT:
            return await self._adopt(vm, raw_vmi)
        if verdict is Claim.FOREIGN:
            await self._collect_if_owner_gone(raw_vmi)
        return None, True

    async def _adopt(self, vm: VirtualMachine, raw_vmi: JsonObject) -> tuple[JsonObject | None, bool]:
        """Take control of an orphan VMI, as upstream's ``AdoptVirtualMachineInstance``.

        As upstream's ``RecheckDeletionTimestamp``, the VM is read afresh first: a cached VM that
        is gone or being deleted must not adopt. A stale VMI makes the update conflict (retried).
        """
        meta = vm.metadata
        assert meta.name is not None
        assert meta.uid is not None
        try:
            fresh = await self._client.get(VIRTUAL_MACHINES, meta.namespace or "", meta.name)
        except NotFoundError:
            return None, True
        if fresh["metadata"].get("uid") != meta.uid or fresh["metadata"].get("deletionTimestamp"):
            return None, True
        reference = controller_reference(
            api_version=vm.api_version, kind=vm.kind, name=meta.name, uid=meta.uid
        )
        try:
            stored = await self._client.update(VIRTUAL_MACHINE_INSTANCES, adopted(raw_vmi, reference))
        except NotFoundError:
            return None, False
        log.info("%s/%s: adopted the VMI %s", meta.namespace, meta.name, raw_vmi["metadata"].get("uid"))
        return stored, False

    async def _collect_if_owner_gone(self, raw_vmi: JsonObject) -> None:
        """Delete a VMI whose controller is a VM of its name that no longer exists.

        The dependent of a deleted VM goes with it (Background deletion; the VM has no finalizer of
        its own). The VM is read afresh, not from the cache (``api.ownership.collectable``), and the
        delete carries the cached resourceVersion, so a VMI orphaned or adopted meanwhile conflicts
        instead of being deleted.
        """
        if not collectable(raw_vmi, api_group=VM_GROUP, kind=VM_KIND, live_uid=""):
            return  # not a VM's dependent whatever the VM: no need to read it
        metadata = raw_vmi["metadata"]
        try:
            live = await self._client.get(VIRTUAL_MACHINES, metadata.get("namespace", ""), metadata["name"])
        except NotFoundError:
            live = None
        live_uid = live["metadata"].get("uid") if live is not None else None
        if collectable(raw_vmi, api_group=VM_GROUP, kind=VM_KIND, live_uid=live_uid):
            await self._delete_vmi(
                VirtualMachineInstance.model_validate(raw_vmi),
                resource_version=metadata.get("resourceVersion"),
            )

    async def _orphan(self, vm: VirtualMachine, raw_vmi: JsonObject | None) -> None:
        """Orphan the VM's dependents (its VMI, its boot snapshots), then release the orphan finalizer."""
        meta = vm.metadata
        assert meta.uid is not None
        assert meta.name is not None
        namespace = meta.namespace or ""
        dependents: list[tuple[str, JsonObject]] = []
        if raw_vmi is not None:
            dependents.append((VIRTUAL_MACHINE_INSTANCES, raw_vmi))
        revisions = (await self._client.list(CONTROLLER_REVISIONS, namespace)).items
        dependents.extend((CONTROLLER_REVISIONS, revision) for revision in revisions)
        for resource, dependent in dependents:
            released = orphaned(dependent, meta.uid)
            if released is not None:
                with contextlib.suppress(NotFoundError):
                    await self._client.update(resource, released)
        try:
            fresh = await self._client.get(VIRTUAL_MACHINES, namespace, meta.name)
        except NotFoundError:
            return
        finalizers = fresh["metadata"].get("finalizers") or []
        if fresh["metadata"].get("uid") != meta.uid or ORPHAN_FINALIZER not in finalizers:
            return
        remaining = [f for f in finalizers if f != ORPHAN_FINALIZER]
        with contextlib.suppress(NotFoundError):
            await self._client.update(
                VIRTUAL_MACHINES, {**fresh, "metadata": {**fresh["metadata"], "finalizers": remaining}}
            )

    async def _run(
        self,
        vm: VirtualMachine,
        raw_vmi: JsonObject | None,
        vmi: VirtualMachineInstance | None,
        *,
        occupied: bool,
    ) -> tuple[Result, RunDecision]:
        """Start, stop or replace the VMI as ``run_strategy.decide`` says.

        ``occupied``: a VMI this VM does not control has its name, so a start waits for it to go.
        """
        decision = decide(vm, vmi, self._run_config, self._clock())
        if decision.action is RunAction.ORPHAN:
            await self._orphan(vm, raw_vmi)
        elif decision.action is RunAction.START and occupied:
            await self._events.record(
                vm.to_wire(),
                type="Warning",
                reason="FailedCreate",
                message="Error creating virtual machine instance: "
                f'virtualmachineinstances.kubevirt.io "{vm.metadata.name}" already exists and is not '
                "controlled by this VirtualMachine",
            )
        elif decision.action is RunAction.START:
            await self._start(vm, cluster_configuration(self._kubevirts))
        elif decision.action is RunAction.DELETE_VMI and vmi is not None:
            if decision.failure_message is not None:
                await self._events.record(
                    vmi.to_wire(), type="Warning", reason="VMIFailed", message=decision.failure_message
                )
            await self._delete_vmi(vmi)
        return Result(requeue_after=decision.requeue_after), decision

    async def _start(self, vm: VirtualMachine, config: KubeVirtConfiguration) -> None:
        """Store the boot snapshot, drop older ones, and create the VMI from the effective spec."""
        effective = effective_spec(vm.spec.template.spec, config)
        revision, vmi = boot_objects(vm, effective)
        namespace = vm.metadata.namespace or ""
        with contextlib.suppress(AlreadyExistsError):
            await self._client.create(CONTROLLER_REVISIONS, revision)
        assert vm.metadata.uid is not None
        prefix = revision_prefix(vm.metadata.uid)
        for old in (await self._client.list(CONTROLLER_REVISIONS, namespace)).items:
            old_name = old["metadata"]["name"]
            if old_name.startswith(prefix) and old_name != revision["metadata"]["name"]:
                with contextlib.suppress(NotFoundError):
                    await self._client.delete(CONTROLLER_REVISIONS, namespace, old_name)
        try:
            created = await self._client.create(VIRTUAL_MACHINE_INSTANCES, vmi)
        except AlreadyExistsError:
            return  # created by an earlier reconcile the VMI cache has not seen yet
        if vmi.get("status"):
            # The API drops the status of a create (a status subresource); it is written after.
            created = await self._client.update_status(
                VIRTUAL_MACHINE_INSTANCES, {**created, "status": vmi["status"]}
            )
        await self._events.record(
            vm.to_wire(),
            type="Normal",
            reason="SuccessfulCreate",
            message="Started the virtual machine by creating the new virtual machine instance "
            + created["metadata"]["name"],
        )

    async def _delete_vmi(self, vmi: VirtualMachineInstance, *, resource_version: str | None = None) -> None:
        if vmi.metadata.deletion_timestamp:
            return
        try:
            await self._client.delete(
                VIRTUAL_MACHINE_INSTANCES,
                vmi.metadata.namespace or "",
                vmi.metadata.name or "",
                resource_version=int(resource_version) if resource_version else None,
            )
        except NotFoundError:
            return
        await self._events.record(
            vmi.to_wire(),
            type="Normal",
            reason="SuccessfulDelete",
            message="Stopped the virtual machine by deleting the virtual machine instance "
            + str(vmi.metadata.uid),
        )

    async def _rollout(
        self, vm: VirtualMachine, vmi: VirtualMachineInstance | None, config: KubeVirtConfiguration
    ) -> Plan | None:
        """Plan against the running VMI and write its live changes into the VMI spec."""
        if vmi is None or vmi.metadata.deletion_timestamp or _phase(vmi) in FINAL_PHASES:
            return None
        desired = effective_spec(vm.spec.template.spec, config)
        result = plan(running=vmi.spec, desired=desired, observed=vmi.status, config=config)
        if result.next_running is not vmi.spec:
            await self._client.update(
                VIRTUAL_MACHINE_INSTANCES, {**vmi.to_wire(), "spec": result.next_running.to_wire()}
            )
            for change in result.live:
                await self._events.record(
                    vm.to_wire(),
                    type="Normal",
                    reason="LiveUpdate",
                    message=f"{vm_path(change.path)}: {change.running!r} -> {change.desired!r} "
                    f"({change.kind.value})",
                )
        return result

    async def _report_pending(self, vm: VirtualMachine, rollout: Plan | None) -> None:
        """One event per pending change when it first appears."""
        before = {(p.path, repr(p.desired)) for p in (vm.status.pending_changes if vm.status else None) or ()}
        for change in rollout.pending if rollout is not None else ():
            if (change.path, repr(change.desired)) not in before:
                await self._events.record(
                    vm.to_wire(),
                    type="Warning" if change.reason != "WaitingForRestart" else "Normal",
                    reason="RestartRequired",
                    message=f"{change.path}: {change.running!r} -> {change.desired!r} pending: "
                    + change.message,
                )
