"""The node agent: runs this node's VMIs through a Hypervisor and reports what it observes.

Level-triggered: every VMI change and every hypervisor ``on_change`` enqueues the VMI's key; a
reconcile compares the VMI spec with ``observe()``, performs the in-place operations ``hotplug``
lists, and writes the status ``status.machine_status`` derives from a fresh observation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from vmplane.agent.hotplug import Operation, OperationKind, operations
from vmplane.agent.hypervisor import (
    Hypervisor,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    ObservedMachine,
    OnChange,
)
from vmplane.agent.machine import HostPaths, VolumeError, machine_name, machine_spec, vmi_key_of
from vmplane.agent.status import failures_of, machine_status
from vmplane.api.resources import NODES, VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.reconcile.events import EventRecorder
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import AlreadyExistsError, NotFoundError, Store

__all__ = ["MACHINE_FINALIZER", "NodeAgent", "VolumePreparer"]

log = logging.getLogger(__name__)

MACHINE_FINALIZER = "vmplane.io/machine"
DEFAULT_GRACE = 30.0


class VolumePreparer(Protocol):
    """Creates the files a machine's disks need before it boots or a disk is hot-plugged."""

    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None:
        """Make every disk of ``spec`` exist on this host."""
        ...

    async def release(self, vmi: VirtualMachineInstance) -> None:
        """Remove the files that live and die with the VMI."""
        ...


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    """Runs the VMIs bound to ``node_name``."""

    def __init__(
        self,
        *,
        store: Store,
        hypervisor: Callable[[OnChange], Hypervisor],
        node_name: str,
        paths: HostPaths,
        clock: Callable[[], datetime],
        preparer: VolumePreparer | None = None,
        node_labels: dict[str, str] | None = None,
        node_taints: list[dict[str, str]] | None = None,
        unplug_timeout: float = 30.0,
    ) -> None:
        self._store = store
        self._node = node_name
        self._paths = paths
        self._clock = clock
        self._preparer = preparer
        self._labels = node_labels or {}
        self._taints = node_taints or []
        self._unplug_timeout = unplug_timeout
        self._events = EventRecorder(store, component="virt-handler", clock=clock)
        self.vmis = Informer(store, VIRTUAL_MACHINE_INSTANCES)
        self.controller: Controller[Key] = Controller(name="node-agent", reconciler=self, workers=2)
        self.hypervisor = hypervisor(lambda name: self.controller.queue.add(vmi_key_of(name)))
        self.vmis.on_change(lambda key, _obj: self.controller.queue.add(key))

    async def start(self) -> None:
        """Register the node, adopt machines left running, and start reconciling."""
        await self._register_node()
        self.vmis.start()
        await self.vmis.wait_synced()
        # Adopt before reconciling: a Running VMI whose machine is not adopted yet would read as gone.
        adopted = await self.hypervisor.adopt()
        self.controller.start()
        for name in adopted:
            self.controller.queue.add(vmi_key_of(name))

    async def stop(self) -> None:
        """Stop reconciling; guests keep running (a new agent adopts them)."""
        await self.controller.stop()
        await self.vmis.stop()
        await self.hypervisor.close()

    async def _register_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self._node,
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubevirt.io/schedulable": "true",
            **self._labels,
        }
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self._node, "labels": labels},
            "spec": {"taints": self._taints} if self._taints else {},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "AgentReady",
                        "lastTransitionTime": _format(self._clock()),
                    }
                ],
                "capacity": {
                    "cpu": str(os.cpu_count() or 1),
                    "memory": f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 1024}Ki",
                },
            },
        }
        try:
            await self._store.create(NODES, node)
        except AlreadyExistsError:
            current = await self._store.get(NODES, "", self._node)
            await self._store.update(
                NODES,
                {**current, "metadata": {**current["metadata"], "labels": labels}, "spec": node["spec"]},
            )
            await self._store.update(
                NODES,
                {**await self._store.get(NODES, "", self._node), "status": node["status"]},
                subresource="status",
            )

    async def _observe(self, name: str) -> ObservedMachine | None:
        try:
            return await self.hypervisor.observe(name)
        except MachineNotFoundError:
            return None

    async def reconcile(self, key: Key) -> Result:
        """Bring one VMI's machine in line with its spec and report what it has."""
        namespace, name = key
        machine = machine_name(namespace, name)
        raw = self.vmis.get(namespace, name)
        if raw is None:
            await self._discard(machine)
            return Result()
        vmi = VirtualMachineInstance.model_validate(raw)
        status = vmi.status
        if status is None or status.node_name != self._node:
            return Result()
        if vmi.metadata.deletion_timestamp:
            await self._finalize(vmi, raw, machine)
            return Result()
        if status.phase in (VMIPhase.SUCCEEDED, VMIPhase.FAILED):
            await self._discard(machine)
            return Result()
        observed = await self._observe(machine)
        if observed is None:
            if status.phase is VMIPhase.RUNNING:
                await self._write(
                    raw,
                    status.model_copy(update={"phase": VMIPhase.FAILED, "reason": "the machine disappeared"}),
                )
                return Result()
            await self._boot(vmi, raw)
            return Result()
        if observed.state is MachineState.RUNNING and operations(
            machine_spec(vmi, paths=self._paths), observed, skip=failures_of(status)
        ):
            await self._hotplug(vmi, raw, machine, observed)
        else:
            await self._report(vmi, raw, observed)
        return Result()

    async def _boot(self, vmi: VirtualMachineInstance, raw: dict[str, Any]) -> None:
        try:
            spec = machine_spec(vmi, paths=self._paths)
            if self._preparer is not None:
                await self._preparer.prepare(vmi, spec)
            await self.hypervisor.start(spec)
        except (VolumeError, HypervisorError, OSError) as err:
            assert vmi.status is not None
            await self._events.record(raw, type="Warning", reason="FailedStart", message=str(err))
            await self._write(
                raw, vmi.status.model_copy(update={"phase": VMIPhase.FAILED, "reason": str(err)})
            )
            return
        await self._events.record(
            raw, type="Normal", reason="Started", message=f"VirtualMachineInstance started on {self._node}"
        )

    async def _hotplug(
        self, vmi: VirtualMachineInstance, raw: dict[str, Any], machine: str, observed: ObservedMachine
    ) -> None:
        failures = failures_of(vmi.status)
        desired = machine_spec(vmi, paths=self._paths)
        pending = operations(desired, observed, skip=failures)
        in_flight = [op.field for op in pending]
        vmi, raw = await self._report(vmi, raw, observed, in_flight=in_flight)
        for op in pending:
            started = time.monotonic()
            try:
                if op.kind is OperationKind.ATTACH_DISK and self._preparer is not None:
                    await self._preparer.prepare(vmi, desired)
                await self._apply(machine, op)
            except (VolumeError, HypervisorError, OSError) as err:
                failures[op.field] = str(err)
                await self._events.record(
                    raw,
                    type="Warning",
                    reason="HotplugFailed",
                    message=f"{op.field}: {op.before} -> {op.after}: {err}",
                )
                continue
            elapsed = (time.monotonic() - started) * 1000
            await self._events.record(
                raw,
                type="Normal",
                reason="HotplugApplied",
                message=f"{op.field}: {op.before} -> {op.after} in {elapsed:.0f}ms",
            )
        await self._report(vmi, raw, await self._observe(machine) or observed, failures=failures)

    async def _apply(self, machine: str, op: Operation) -> None:
        hv = self.hypervisor
        if op.kind is OperationKind.CPU:
            await hv.set_sockets(machine, int(str(op.after)))
        elif op.kind is OperationKind.MEMORY:
            await hv.set_memory(machine, int(str(op.after)))
        elif op.kind is OperationKind.ATTACH_DISK and op.disk is not None:
            await hv.attach_disk(machine, op.disk)
        elif op.kind is OperationKind.DETACH_DISK:
            await hv.detach_disk(machine, op.field.split("[name=", 1)[1][:-1], timeout=self._unplug_timeout)
        elif op.kind is OperationKind.ATTACH_NIC and op.nic is not None:
            await hv.attach_nic(machine, op.nic)
        elif op.kind is OperationKind.DETACH_NIC:
            await hv.detach_nic(machine, str(op.before), timeout=self._unplug_timeout)
        elif op.kind is OperationKind.LINK and op.nic is not None:
            await hv.set_link(machine, op.nic.name, up=op.nic.link_up)

    async def _report(
        self,
        vmi: VirtualMachineInstance,
        raw: dict[str, Any],
        observed: ObservedMachine,
        *,
        in_flight: list[str] | None = None,
        failures: dict[str, str] | None = None,
    ) -> tuple[VirtualMachineInstance, dict[str, Any]]:
        """Write the status ``observed`` implies (if it changed); returns the VMI as now stored."""
        known = failures if failures is not None else failures_of(vmi.status)
        desired = machine_spec(vmi, paths=self._paths)
        # A failure is forgotten once the guest has what the spec asks again (the change was reverted).
        still_failing = {
            f: m for f, m in known.items() if any(op.field == f for op in operations(desired, observed))
        }
        status = machine_status(
            vmi, observed, failures=still_failing, in_flight=in_flight or (), now=_format(self._clock())
        )
        if (
            status.phase is VMIPhase.RUNNING
            and vmi.status is not None
            and vmi.status.phase is not VMIPhase.RUNNING
        ):
            await self._events.record(raw, type="Normal", reason="Running", message="the guest is running")
        if status == vmi.status:
            return vmi, raw
        raw = await self._write(raw, status)
        return VirtualMachineInstance.model_validate(raw), raw

    async def _write(self, raw: dict[str, Any], status: Any) -> dict[str, Any]:
        return await self._store.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "status": status.to_wire()}, subresource="status"
        )

    async def _finalize(self, vmi: VirtualMachineInstance, raw: dict[str, Any], machine: str) -> None:
        grace = vmi.spec.termination_grace_period_seconds
        with contextlib.suppress(MachineNotFoundError):  # never booted, or already forgotten
            await self.hypervisor.stop(machine, grace_period=DEFAULT_GRACE if grace is None else float(grace))
        await self._discard(machine)
        if self._preparer is not None:
            await self._preparer.release(vmi)
        await self._events.record(raw, type="Normal", reason="Stopped", message="the guest was stopped")
        finalizers = [f for f in vmi.metadata.finalizers or () if f != MACHINE_FINALIZER]
        with contextlib.suppress(NotFoundError):
            await self._store.update(
                VIRTUAL_MACHINE_INSTANCES, {**raw, "metadata": {**raw["metadata"], "finalizers": finalizers}}
            )

    async def _discard(self, machine: str) -> None:
        observed = await self._observe(machine)
        if observed is None:
            return
        if observed.state in (MachineState.STARTING, MachineState.RUNNING):
            await self.hypervisor.stop(machine, grace_period=DEFAULT_GRACE)
        await self.hypervisor.forget(machine)
