"""The node agent: runs this node's VMIs through a Hypervisor and reports only what it observes.

Level-triggered, as every vmplane loop: a VMI change and a hypervisor ``on_change`` both just enqueue
the VMI's key; a reconcile re-reads the VMI and ``observe()``, and then does one of: boot a Scheduled
VMI, perform the in-place operations ``hotplug.operations`` lists (reporting them in flight first),
stop and forget the machine of a deleted VMI and release its finalizer, or write the status
``status.machine_status`` derives. The decisions are pure functions; this module only sequences the
hypervisor calls and the store writes.

A failed operation is recorded against its VMI spec path (in the status, where the VM planner reads
it, and here, since one condition cannot hold two interfaces) and not retried until the spec and
the guest agree again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
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
from vmplane.agent.machine import MachineSpecError, VolumeResolver, machine_name, machine_spec, vmi_key_of
from vmplane.agent.node import (
    DEFAULT_HEARTBEAT_INTERVAL,
    HostFacts,
    NodeRegistration,
    host_facts,
    node_object,
)
from vmplane.agent.scheduling import Taint
from vmplane.agent.status import FINAL_PHASES, failures_of, machine_status, phase_status, running_differences
from vmplane.api.ownership import MACHINE_FINALIZER  # held on every VMI until its machine is stopped
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus, VMIPhase
from vmplane.client.base import ObjectClient
from vmplane.reconcile.events import EventRecorder
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["DEFAULT_GRACE_PERIOD", "MACHINE_FINALIZER", "EventSink", "NodeAgent", "VolumePreparer"]

log = logging.getLogger(__name__)


def _ignore_hotplug(kind: str, succeeded: bool, seconds: float) -> None:
    """The default ``NodeAgent.on_hotplug``: nothing is counted."""


#: ``terminationGracePeriodSeconds`` when a VMI does not say (Kubernetes' default).
DEFAULT_GRACE_PERIOD = 30.0
_LIVE = (MachineState.STARTING, MachineState.RUNNING)


class EventSink(Protocol):
    """Where the agent reports what happened (``reconcile.events.EventRecorder``)."""

    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record one event about ``obj``."""
        ...


class VolumePreparer(Protocol):
    """Creates the files a machine's disks need before it boots or a disk is hot-plugged."""

    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None:
        """Make every disk of ``spec`` exist on this host (idempotent)."""
        ...

    async def release(self, vmi: VirtualMachineInstance) -> None:
        """Remove the files that live and die with the VMI."""
        ...


class NodeAgent:
    """Runs the VMIs whose ``status.nodeName`` is ``node_name``; ``start``/``stop`` in the current loop.

    ``hypervisor`` builds the driver from the callback it must call on every change (the agent's
    queue), so the composition root need not wire the two by hand. ``resolver`` maps volumes to files
    (``paths`` is the same, under the name ``app.py`` used first). ``events`` defaults to a
    ``virt-handler`` EventRecorder on ``client``. ``unplug_timeout`` bounds each disk and NIC unplug.
    ``host`` is what the Node reports of this host (read from it when None); ``capacity`` overrides
    its CPUs and memory; the Node's heartbeat is renewed every ``heartbeat_interval`` seconds.
    """

    def __init__(
        self,
        *,
        client: ObjectClient,
        hypervisor: Callable[[OnChange], Hypervisor],
        node_name: str,
        clock: Callable[[], datetime],
        resolver: VolumeResolver | None = None,
        paths: VolumeResolver | None = None,
        events: EventSink | None = None,
        preparer: VolumePreparer | None = None,
        node_labels: Mapping[str, str] | None = None,
        node_taints: Sequence[Taint | Mapping[str, str]] = (),
        capacity: Mapping[str, str] | None = None,
        host: HostFacts | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        unplug_timeout: float = 30.0,
        workers: int = 4,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        chosen = resolver if resolver is not None else paths
        if chosen is None:
            raise TypeError("NodeAgent needs a resolver")
        self._resolver: VolumeResolver = chosen
        self._client = client
        self._node = node_name
        self._clock = clock
        self._events: EventSink = events or EventRecorder(client, component="virt-handler", clock=clock)
        self._preparer = preparer
        self._labels = dict(node_labels or {})
        self._taints = [t if isinstance(t, Taint) else Taint.from_wire(t) for t in node_taints]
        self._capacity = capacity
        self._unplug_timeout = unplug_timeout
        #: Told each in-place operation's kind, whether it succeeded and how long it took (the
        #: composition root points it at ``metrics.Metrics.hotplug``).
        self.on_hotplug: Callable[[str, bool, float], None] = _ignore_hotplug
        #: machine -> (VMI uid, failed path -> message): failures met, until spec and guest agree.
        self._failed: dict[str, tuple[str, dict[str, str]]] = {}
        informers = informers or SharedInformerFactory(client)
        # Only this node's VMIs, as a kubelet watches only its pods.
        self.vmis = informers.informer(
            VIRTUAL_MACHINE_INSTANCES, field_selector=f"status.nodeName={node_name}"
        )
        self.controller: Controller[Key] = Controller(name="node-agent", reconciler=self, workers=workers)
        self.hypervisor = hypervisor(self._machine_changed)
        self.vmis.on_change(self._vmi_changed)
        facts = host if host is not None else host_facts(runtime_version="unknown")
        self.registration = NodeRegistration(
            client=client,
            informers=informers,
            name=node_name,
            build=lambda: node_object(
                name=self._node,
                labels=self._labels,
                taints=self._taints,
                facts=facts,
                capacity=self._capacity,
                now=self._now(),
            ),
            heartbeat_interval=heartbeat_interval,
            clock=clock,
        )

    def _machine_changed(self, machine: str) -> None:
        self.controller.queue.add(vmi_key_of(machine))

    def _vmi_changed(self, key: Key, obj: JsonObject | None) -> None:
        # A deleted VMI may leave a machine behind; any other is ours only once bound to this node.
        if obj is None or (obj.get("status") or {}).get("nodeName") == self._node:
            self.controller.queue.add(key)

    async def start(self) -> None:
        """Register the Node, adopt the machines an earlier agent left, then start reconciling.

        Adoption comes first: a Running VMI reconciled before its machine is adopted would look lost.
        """
        await self.registration.start()
        for machine in await self.hypervisor.adopt():
            self.controller.queue.add(vmi_key_of(machine))
        self.vmis.start()
        await self.vmis.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop reconciling and disconnect; the guests keep running for the next agent to adopt."""
        await self.controller.stop()
        await self.registration.stop()
        await self.vmis.stop()
        await self.hypervisor.close()

    def _now(self) -> str:
        return self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _observe(self, machine: str) -> ObservedMachine | None:
        try:
            return await self.hypervisor.observe(machine)
        except MachineNotFoundError:
            return None

    # -- the reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        """Bring one VMI's machine in line with its spec and report what the machine has."""
        namespace, name = key
        machine = machine_name(namespace, name)
        try:
            raw = await self._client.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError:
            await self._discard(machine)
            return Result()
        vmi = VirtualMachineInstance.model_validate(raw)
        status = vmi.status or VirtualMachineInstanceStatus()
        if status.node_name != self._node:
            return Result()
        if vmi.metadata.deletion_timestamp:
            await self._finalize(vmi, raw, machine)
        elif status.phase in FINAL_PHASES:
            await self._discard(machine)  # it ended; the VM controller decides what comes next
        elif (observed := await self._observe(machine)) is None:
            if status.phase is VMIPhase.RUNNING:
                reason = "the machine is gone: the hypervisor does not know it"
                await self._write(
                    vmi, raw, phase_status(vmi, VMIPhase.FAILED, reason=reason, now=self._now())
                )
            else:
                await self._boot(vmi, raw, machine)
        else:
            await self._sync(vmi, raw, machine, observed)
        return Result()

    async def _boot(self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str) -> None:
        try:
            spec = machine_spec(vmi, resolver=self._resolver)
            if self._preparer is not None:
                await self._preparer.prepare(vmi, spec)
            await self.hypervisor.start(spec)
        except (MachineSpecError, HypervisorError, OSError) as err:
            status = phase_status(vmi, VMIPhase.FAILED, reason=f"cannot start: {err}", now=self._now())
            await self._write(vmi, raw, status)
            return
        await self._events.record(
            raw, type="Normal", reason="Started", message="VirtualMachineInstance started."
        )
        observed = await self._observe(machine)
        if observed is not None:
            await self._sync(vmi, raw, machine, observed)

    def _desired(self, vmi: VirtualMachineInstance) -> MachineSpec | None:
        try:
            return machine_spec(vmi, resolver=self._resolver)
        except MachineSpecError as err:
            # Admission should have refused this spec; report it, and hotplug nothing.
            log.warning("%s/%s: %s", vmi.metadata.namespace, vmi.metadata.name, err)
            return None

    def _failures(self, vmi: VirtualMachineInstance, machine: str) -> dict[str, str]:
        uid, remembered = self._failed.get(machine, ("", {}))
        return {**failures_of(vmi.status), **(remembered if uid == vmi.metadata.uid else {})}

    async def _sync(
        self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str, observed: ObservedMachine
    ) -> None:
        desired = self._desired(vmi)
        failures = self._failures(vmi, machine)
        if desired is not None and observed.state is MachineState.RUNNING:
            pending = operations(desired, observed, skip=failures)
            if pending:
                # Report the hotplugs in flight (HotVCPUChange/HotMemoryChange True) before doing them.
                in_flight = machine_status(vmi, observed, desired=desired, failures=failures, now=self._now())
                raw = await self._write(vmi, raw, in_flight)
                vmi = VirtualMachineInstance.model_validate(raw)
                await self._perform(vmi, raw, machine, desired, pending, failures)
                observed = await self._observe(machine) or observed
        differing = running_differences(desired, observed)
        self._failed[machine] = (
            vmi.metadata.uid or "",
            {f: m for f, m in failures.items() if f in differing},
        )
        await self._write(
            vmi, raw, machine_status(vmi, observed, desired=desired, failures=failures, now=self._now())
        )

    async def _perform(
        self,
        vmi: VirtualMachineInstance,
        raw: JsonObject,
        machine: str,
        desired: MachineSpec,
        pending: list[Operation],
        failures: dict[str, str],
    ) -> None:
        """Apply ``pending`` in order, recording each outcome as an event and each failure in ``failures``."""
        for op in pending:
            if op.field in failures:
                continue  # e.g. the plug half of a volume swap whose unplug failed
            started = time.monotonic()
            try:
                if op.kind is OperationKind.ATTACH_DISK and self._preparer is not None:
                    await self._preparer.prepare(vmi, desired)
                await self._apply(machine, op)
            except MachineNotFoundError:
                return
            except (HypervisorError, MachineSpecError, OSError) as err:  # the preparer's too
                now = await self._observe(machine)
                if now is None or now.state is not MachineState.RUNNING:
                    return  # the machine ended meanwhile: that is not a failed hotplug
                self.on_hotplug(op.kind.value, False, time.monotonic() - started)
                failures[op.field] = str(err)
                self._failed[machine] = (vmi.metadata.uid or "", dict(failures))
                message = f"{op.field}: {op.before} -> {op.after} failed: {err}"
                await self._events.record(raw, type="Warning", reason="HotplugFailed", message=message)
                continue
            self.on_hotplug(op.kind.value, True, time.monotonic() - started)
            elapsed = (time.monotonic() - started) * 1000
            message = f"{op.field}: {op.before} -> {op.after} in {elapsed:.0f} ms"
            await self._events.record(raw, type="Normal", reason="HotplugApplied", message=message)

    async def _apply(self, machine: str, op: Operation) -> None:
        hv, timeout = self.hypervisor, self._unplug_timeout
        if op.kind is OperationKind.SET_SOCKETS and op.sockets is not None:
            await hv.set_sockets(machine, op.sockets)
        elif op.kind is OperationKind.SET_MEMORY and op.memory_bytes is not None:
            await hv.set_memory(machine, op.memory_bytes)
        elif op.kind is OperationKind.ATTACH_DISK and op.disk is not None:
            await hv.attach_disk(machine, op.disk)
        elif op.kind is OperationKind.DETACH_DISK and op.device is not None:
            await hv.detach_disk(machine, op.device, timeout=timeout)
        elif op.kind is OperationKind.ATTACH_NIC and op.nic is not None:
            await hv.attach_nic(machine, op.nic)
        elif op.kind is OperationKind.DETACH_NIC and op.device is not None:
            await hv.detach_nic(machine, op.device, timeout=timeout)
        elif op.kind is OperationKind.SET_LINK and op.device is not None and op.link_up is not None:
            await hv.set_link(machine, op.device, up=op.link_up)
        else:
            raise AssertionError(f"malformed operation {op}")

    async def _write(
        self, vmi: VirtualMachineInstance, raw: JsonObject, status: VirtualMachineInstanceStatus
    ) -> JsonObject:
        """Store ``status`` if it changed (ConflictError: the loop reconciles again), announcing the phase."""
        if status == vmi.status:
            return raw
        stored = await self._client.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "status": status.to_wire()}, subresource="status"
        )
        before = vmi.status.phase if vmi.status is not None else None
        if status.phase is not before:
            await self._announce(stored, status)
        return stored

    async def _announce(self, raw: JsonObject, status: VirtualMachineInstanceStatus) -> None:
        if status.phase is VMIPhase.SUCCEEDED:
            message = f"The guest stopped: {status.reason or 'shut down'}"
            await self._events.record(raw, type="Normal", reason="Stopped", message=message)
        elif status.phase is VMIPhase.FAILED:
            message = f"The guest failed: {status.reason or 'unknown reason'}"
            await self._events.record(raw, type="Warning", reason="Failed", message=message)

    # -- ending ----------------------------------------------------------------------------------

    async def _finalize(self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str) -> None:
        """Stop the machine of a deleted VMI, forget it, release its files, then the finalizer."""
        grace = vmi.spec.termination_grace_period_seconds
        stopped = await self._discard(
            machine, grace_period=DEFAULT_GRACE_PERIOD if grace is None else float(grace)
        )
        if stopped:
            message = "VirtualMachineInstance stopped: it was deleted."
            await self._events.record(raw, type="Normal", reason="Stopped", message=message)
        if self._preparer is not None:
            await self._preparer.release(vmi)
        finalizers = list(vmi.metadata.finalizers or ())
        if MACHINE_FINALIZER in finalizers:
            finalizers.remove(MACHINE_FINALIZER)
            with contextlib.suppress(NotFoundError):
                await self._client.update(
                    VIRTUAL_MACHINE_INSTANCES,
                    {**raw, "metadata": {**raw["metadata"], "finalizers": finalizers}},
                )

    async def _discard(self, machine: str, *, grace_period: float = DEFAULT_GRACE_PERIOD) -> bool:
        """Stop (if it still runs) and forget ``machine``; True if it had to be stopped."""
        self._failed.pop(machine, None)
        observed = await self._observe(machine)
        if observed is None:
            return False
        stopped = observed.state in _LIVE
        if stopped:
            await self.hypervisor.stop(machine, grace_period=grace_period)
        await self.hypervisor.forget(machine)
        return stopped
