"""The VM controller: starts and stops VMIs per run strategy, and rolls VM changes out to them.

Each reconcile re-reads the VM, its VMI and the cluster configuration from the informers' caches,
asks the pure planner what to do, writes the live changes into the VMI spec (the node agent turns
them into hotplugs), and writes the VM's status derived by ``vm_status.derive_status``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration
from vmplane.api.lifecycle import effective_run_strategy, wants_restart_after
from vmplane.api.resources import CONTROLLER_REVISIONS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vm import RunStrategy, StateChangeRequest, VirtualMachine, VirtualMachineStatus
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.controller.boot import boot_objects, revision_prefix
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.effective import effective_spec
from vmplane.rollout.plan import Plan, plan, vm_path
from vmplane.rollout.vm_status import Observation, derive_status
from vmplane.store.base import AlreadyExistsError, NotFoundError, Store

__all__ = ["EventSink", "VMReconciler", "cluster_configuration"]

log = logging.getLogger(__name__)

FINAL_PHASES = (VMIPhase.SUCCEEDED, VMIPhase.FAILED)


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


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        self._crash_backoff = crash_backoff

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
        config = cluster_configuration(self._kubevirts)
        result, status = await self._run(vm, vmi, vm.status or VirtualMachineStatus(), config)
        rollout = await self._rollout(vm, vmi, config)
        await self._report_pending(vm, rollout)
        crash_loop = status.start_failure is not None and result.requeue_after is not None
        observation = Observation(vmi, rollout, crash_loop, _format_time(self._clock()))
        new_status = derive_status(vm.model_copy(update={"status": status}), observation)
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
        self,
        vm: VirtualMachine,
        vmi: VirtualMachineInstance | None,
        status: VirtualMachineStatus,
        config: KubeVirtConfiguration,
    ) -> tuple[Result, VirtualMachineStatus]:
        """Start, stop or replace the VMI as the run strategy and state-change requests say."""
        if vm.metadata.deletion_timestamp:
            if vmi is not None:
                await self._delete_vmi(vmi)
            return Result(), status
        if vmi is not None and vmi.metadata.deletion_timestamp:
            return Result(), status  # wait for the agent to stop the guest
        requests = list(status.state_change_requests or [])
        if requests:
            return await self._handle_request(vm, vmi, status, requests, config)
        strategy = effective_run_strategy(vm)
        phase = _phase(vmi)
        if strategy is RunStrategy.HALTED:
            if vmi is not None:
                await self._delete_vmi(vmi)
            return Result(), status.model_copy(update={"start_failure": None})
        if vmi is not None and phase in FINAL_PHASES:
            assert phase is not None
            if not wants_restart_after(strategy, phase):
                return Result(), status
            return await self._replace_finished(vmi, phase, status)
        if vmi is None and strategy in (RunStrategy.ALWAYS, RunStrategy.RERUN_ON_FAILURE, RunStrategy.ONCE):
            if strategy is RunStrategy.ONCE and status.created:
                return Result(), status
            retry = self._retry_delay(status)
            if retry > 0:
                return Result(requeue_after=retry), status
            await self._start(vm, config)
        if phase is VMIPhase.RUNNING and status.start_failure is not None:
            status = status.model_copy(update={"start_failure": None})
        return Result(), status

    async def _handle_request(
        self,
        vm: VirtualMachine,
        vmi: VirtualMachineInstance | None,
        status: VirtualMachineStatus,
        requests: list[StateChangeRequest],
        config: KubeVirtConfiguration,
    ) -> tuple[Result, VirtualMachineStatus]:
        first = requests[0]
        if first.action == "Stop":
            if vmi is not None and (first.uid is None or first.uid == vmi.metadata.uid):
                await self._delete_vmi(vmi)
                return Result(), status
            requests.pop(0)
        elif vmi is None:
            await self._start(vm, config)
            requests.pop(0)
        elif _phase(vmi) in FINAL_PHASES:
            await self._delete_vmi(vmi)
            return Result(), status
        else:
            requests.pop(0)
        return Result(), status.model_copy(update={"state_change_requests": requests or None})

    def _retry_delay(self, status: VirtualMachineStatus) -> float:
        failure = status.start_failure or {}
        retry_after = failure.get("retryAfterTimestamp")
        if not retry_after:
            return 0.0
        moment = datetime.strptime(retry_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=self._clock().tzinfo)
        return max(0.0, (moment - self._clock()).total_seconds())

    async def _replace_finished(
        self, vmi: VirtualMachineInstance, phase: VMIPhase, status: VirtualMachineStatus
    ) -> tuple[Result, VirtualMachineStatus]:
        """Delete a finished VMI so a new one starts; failures back off exponentially (CrashLoopBackOff)."""
        if phase is VMIPhase.FAILED:
            failure = dict(status.start_failure or {})
            if failure.get("lastFailedVMIUID") != vmi.metadata.uid:
                count = int(failure.get("consecutiveFailCount", 0)) + 1
                delay = min(self._crash_backoff * 2 ** (count - 1), 300.0)
                retry_at = self._clock() + timedelta(seconds=delay)
                failure = {
                    "consecutiveFailCount": count,
                    "lastFailedVMIUID": vmi.metadata.uid,
                    "retryAfterTimestamp": _format_time(retry_at),
                }
                status = status.model_copy(update={"start_failure": failure})
                reason = vmi.status.reason if vmi.status is not None else None
                await self._events.record(
                    vmi.to_wire(),
                    type="Warning",
                    reason="VMIFailed",
                    message=f"the guest failed ({reason or 'unknown reason'}); restarting in {delay:.0f}s",
                )
        await self._delete_vmi(vmi)
        return Result(requeue_after=self._retry_delay(status) or None), status

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
