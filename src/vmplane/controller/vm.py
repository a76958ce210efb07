"""The VM controller: starts and stops VMIs per run strategy, and rolls VM changes out to them.

Each reconcile re-reads the VM, its VMI and the cluster configuration from the informers' caches,
asks ``run_strategy.decide`` whether to start, stop or replace the VMI and acts on that, asks the
pure planner what to do, writes the live changes into the VMI spec (the node agent turns
them into hotplugs), and writes the VM's status derived by ``vm_status.derive_status``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration
from vmplane.api.resources import CONTROLLER_REVISIONS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
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
from vmplane.store.base import AlreadyExistsError, NotFoundError, Store

__all__ = ["EventSink", "VMReconciler", "cluster_configuration"]

log = logging.getLogger(__name__)


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
        store: Store,
        vms: Informer,
        vmis: Informer,
        kubevirts: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        crash_backoff: float = 10.0,
    ) -> None:
        self._store = store
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
        vmi = VirtualMachineInstance.model_validate(raw_vmi) if raw_vmi is not None else None
        if raw_vm is None:
            if vmi is not None and not vmi.metadata.deletion_timestamp:
                await self._delete_vmi(vmi)
            return Result()
        vm = VirtualMachine.model_validate(raw_vm)
        if vmi is not None and not self._owned(vm, vmi):
            await self._delete_vmi(vmi)
            vmi = None
        result, decision = await self._run(vm, vmi)
        config = cluster_configuration(self._kubevirts)
        rollout = await self._rollout(vm, vmi, config)
        await self._report_pending(vm, rollout)
        observation = Observation(vmi, rollout, decision.crash_looping, format_time(self._clock()))
        new_status = derive_status(vm.model_copy(update={"status": decision.status}), observation)
        if new_status != vm.status:
            await self._store.update(
                VIRTUAL_MACHINES, {**vm.to_wire(), "status": new_status.to_wire()}, subresource="status"
            )
        return result

    @staticmethod
    def _owned(vm: VirtualMachine, vmi: VirtualMachineInstance) -> bool:
        owners = vmi.metadata.owner_references or []
        return any(o.uid == vm.metadata.uid for o in owners) if owners else True

    async def _run(
        self, vm: VirtualMachine, vmi: VirtualMachineInstance | None
    ) -> tuple[Result, RunDecision]:
        """Start, stop or replace the VMI as ``run_strategy.decide`` says."""
        decision = decide(vm, vmi, self._run_config, self._clock())
        if decision.action is RunAction.START:
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
            await self._store.create(CONTROLLER_REVISIONS, revision)
        assert vm.metadata.uid is not None
        prefix = revision_prefix(vm.metadata.uid)
        for old in (await self._store.list(CONTROLLER_REVISIONS, namespace)).items:
            old_name = old["metadata"]["name"]
            if old_name.startswith(prefix) and old_name != revision["metadata"]["name"]:
                with contextlib.suppress(NotFoundError):
                    await self._store.delete(CONTROLLER_REVISIONS, namespace, old_name)
        try:
            created = await self._store.create(VIRTUAL_MACHINE_INSTANCES, vmi)
        except AlreadyExistsError:
            return  # created by an earlier reconcile the VMI cache has not seen yet
        await self._events.record(
            vm.to_wire(),
            type="Normal",
            reason="SuccessfulCreate",
            message="Started the virtual machine by creating the new virtual machine instance "
            + created["metadata"]["name"],
        )

    async def _delete_vmi(self, vmi: VirtualMachineInstance) -> None:
        if vmi.metadata.deletion_timestamp:
            return
        try:
            await self._store.delete(
                VIRTUAL_MACHINE_INSTANCES, vmi.metadata.namespace or "", vmi.metadata.name or ""
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
            await self._store.update(
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
