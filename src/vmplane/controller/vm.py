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
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.guest_resources import NodeUsage, Resources, allocatable_of, cpu_allocation_ratio
from vmplane.api.instancetype_refs import Lookup
from vmplane.api.kubevirt import KubeVirtConfiguration, configuration_of
from vmplane.api.ownership import (
    Claim,
    adopted,
    claim,
    collectable,
    controller_reference,
)
from vmplane.api.resources import CONTROLLER_REVISIONS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.timestamps import timestamp
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.client.base import ObjectClient
from vmplane.controller.boot import boot_objects, revision_prefix
from vmplane.controller.instancetypes import store_snapshots, unsized_message
from vmplane.controller.run_strategy import FINAL_PHASES, RunAction, RunConfig, RunDecision, decide
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.effective import EffectiveSpec
from vmplane.rollout.fields import REPORTED_BY_NODE_AGENT
from vmplane.rollout.placement import PlacementViolation, placement_after
from vmplane.rollout.plan import Plan, plan, vm_path
from vmplane.rollout.vm_effective import VMEffective, vm_effective
from vmplane.rollout.vm_status import Observation, derive_status
from vmplane.store.base import AlreadyExistsError, JsonObject, NotFoundError

__all__ = ["EventSink", "VMReconciler", "cluster_configuration"]

log = logging.getLogger(__name__)

VM_GROUP = "kubevirt.io"
VM_KIND = "VirtualMachine"


def cluster_configuration(kubevirts: Informer) -> KubeVirtConfiguration:
    """The configuration of the installation's KubeVirt object (defaults when there is none)."""
    return configuration_of(kubevirts.list())


def _later(vm: VirtualMachine) -> bool:
    """Whether the VM's spec changed since it was created (so older boot snapshots may exist)."""
    return (vm.metadata.generation or 1) > 1


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
        nodes: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        crash_backoff: float = 10.0,
        lookup: Lookup = lambda _resource, _namespace, _name: None,
    ) -> None:
        """``lookup`` reads instance types, preferences and their snapshots (the manager's caches)."""
        self._lookup = lookup
        self._client = client
        self._vms = vms
        self._vmis = vmis
        self._usage = NodeUsage(vmis)
        self._kubevirts = kubevirts
        self._nodes = nodes
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
        config = cluster_configuration(self._kubevirts)
        sized = vm_effective(vm, config, self._lookup)
        if not vm.metadata.deletion_timestamp:
            vm = await store_snapshots(self._client, vm, sized.resolution)
        result, decision, started = await self._run(vm, vmi, occupied=occupied, sized=sized)
        if decision.action is RunAction.ORPHAN:
            return result  # the VM is going: no rollout, no status
        if started is not None:
            # The status written below already reports the VMI just created, rather than a second
            # write doing so once the VMI cache has seen it.
            raw_vmi, vmi = started, VirtualMachineInstance.model_validate(started)
        rollout = await self._rollout(vm, vmi, config, sized.effective)
        placement = self._placement(vmi, rollout, config, sized.effective)
        await self._report_pending(vm, rollout, placement)
        observation = Observation(
            vmi, rollout, decision.crash_looping, timestamp(self._clock()), placement=placement
        )
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

    async def _run(
        self,
        vm: VirtualMachine,
        vmi: VirtualMachineInstance | None,
        *,
        occupied: bool,
        sized: VMEffective,
    ) -> tuple[Result, RunDecision, JsonObject | None]:
        """Start, stop or replace the VMI as ``run_strategy.decide`` says; the VMI it created, if any.

        ``occupied``: a VMI this VM does not control has its name, so a start waits for it to go.
        """
        decision = decide(vm, vmi, self._run_config, self._clock())
        started = None
        # ORPHAN: the garbage collector drops the VM's references from its dependents and then the
        # finalizer; the VMI is left running, so there is nothing to do here.
        if decision.action is RunAction.START and occupied:
            await self._events.record(
                vm.to_wire(),
                type="Warning",
                reason="FailedCreate",
                message="Error creating virtual machine instance: "
                f'virtualmachineinstances.kubevirt.io "{vm.metadata.name}" already exists and is not '
                "controlled by this VirtualMachine",
            )
        elif decision.action is RunAction.START and sized.effective is None:
            await self._events.record(
                vm.to_wire(), type="Warning", reason="FailedCreate", message=unsized_message(sized)
            )
        elif decision.action is RunAction.START:
            assert sized.effective is not None
            started = await self._start(vm, sized.effective)
        elif decision.action is RunAction.DELETE_VMI and vmi is not None:
            if decision.failure_message is not None:
                await self._events.record(
                    vmi.to_wire(), type="Warning", reason="VMIFailed", message=decision.failure_message
                )
            await self._delete_vmi(vmi)
        return Result(requeue_after=decision.requeue_after), decision, started

    async def _start(self, vm: VirtualMachine, effective: EffectiveSpec) -> JsonObject | None:
        """Store the boot snapshot, drop older ones, and create the VMI from the effective spec (returned;
        None if an earlier reconcile created it)."""
        revision, vmi = boot_objects(vm, effective)
        namespace = vm.metadata.namespace or ""
        with contextlib.suppress(AlreadyExistsError):
            await self._client.create(CONTROLLER_REVISIONS, revision)
        assert vm.metadata.uid is not None
        prefix = revision_prefix(vm.metadata.uid)
        # Snapshots are named by generation, so at generation 1 there is no older one: no list of
        # every revision in the namespace for each first start (quadratic over a fleet).
        olders = (await self._client.list(CONTROLLER_REVISIONS, namespace)).items if _later(vm) else []
        for old in olders:
            old_name = old["metadata"]["name"]
            if old_name.startswith(prefix) and old_name != revision["metadata"]["name"]:
                with contextlib.suppress(NotFoundError):
                    await self._client.delete(CONTROLLER_REVISIONS, namespace, old_name)
        try:
            created = await self._client.create(VIRTUAL_MACHINE_INSTANCES, vmi)
        except AlreadyExistsError:
            return None  # created by an earlier reconcile the VMI cache has not seen yet
        if vmi.get("status") and not created.get("status"):
            # An API that drops the status of a create (a status subresource) gets it written after.
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
        return created

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
        self,
        vm: VirtualMachine,
        vmi: VirtualMachineInstance | None,
        config: KubeVirtConfiguration,
        desired: EffectiveSpec | None,
    ) -> Plan | None:
        """Plan against the running VMI and write its live changes into the VMI spec (nothing while
        the VM's instance type or preference does not resolve)."""
        if vmi is None or vmi.metadata.deletion_timestamp or _phase(vmi) in FINAL_PHASES or desired is None:
            return None
        ratio = cpu_allocation_ratio(config)
        result = plan(
            running=vmi.spec,
            desired=desired,
            observed=vmi.status,
            config=config,
            node_room=self._node_room(vmi, ratio),
            cpu_allocation_ratio=ratio,
        )
        if result.next_running is not vmi.spec:
            await self._client.update(
                VIRTUAL_MACHINE_INSTANCES, {**vmi.to_wire(), "spec": result.next_running.to_wire()}
            )
            # A hotplug's node agent records its outcome (HotplugApplied/HotplugFailed, with its
            # time); one event per change, so only what no agent applies is announced here.
            for change in result.live:
                if change.kind in REPORTED_BY_NODE_AGENT:
                    continue
                await self._events.record(
                    vm.to_wire(),
                    type="Normal",
                    reason="LiveUpdate",
                    message=f"{vm_path(change.path)}: {change.running!r} -> {change.desired!r} "
                    f"({change.kind.value})",
                )
            # Written into the VMI: nothing is left to apply, so this reconcile's VM status already
            # observes the generation (one status write per change, not a second one to say so).
            return dataclasses.replace(result, live=())
        return result

    def _node_room(self, vmi: VirtualMachineInstance, ratio: int) -> Resources | None:
        """What the VMI's node has for it: allocatable minus the other VMIs' requests (None: not bound,
        or a node that declares no allocatable)."""
        node_name = vmi.status.node_name if vmi.status is not None else None
        node = self._nodes.get("", node_name) if node_name else None
        allocatable = allocatable_of(node) if node is not None else None
        if allocatable is None or node_name is None:
            return None
        key = (vmi.metadata.namespace or "", vmi.metadata.name or "")
        others = self._usage.by_node(cpu_allocation_ratio=ratio, exclude=key)
        return allocatable - others.get(node_name, Resources())

    def _placement(
        self,
        vmi: VirtualMachineInstance | None,
        rollout: Plan | None,
        config: KubeVirtConfiguration,
        desired: EffectiveSpec | None,
    ) -> PlacementViolation | None:
        """Whether the VMI's node still admits the placement the rollout left in the VMI spec (only
        for a VMI the rollout looked at: alive and not final)."""
        if vmi is None or rollout is None:
            return None
        node_name = vmi.status.node_name if vmi.status is not None else None
        node = self._nodes.get("", node_name) if node_name else None
        return placement_after(vmi=vmi, rollout=rollout, node=node, desired=desired, config=config)

    async def _report_pending(
        self, vm: VirtualMachine, rollout: Plan | None, placement: PlacementViolation | None
    ) -> None:
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
        for change in placement.pending if placement is not None else ():
            if (change.path, repr(change.desired)) not in before:
                await self._events.record(
                    vm.to_wire(),
                    type="Warning",
                    reason="PlacementViolated",
                    message=f"{change.path}: the guest runs on {change.running}: {change.message}",
                )
