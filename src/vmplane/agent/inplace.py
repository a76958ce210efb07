"""A Sync plan's in-place operations carried out on a running machine: a vCPU, memory, a disk or
medium, a NIC or its link, each hot-plugged through the Hypervisor and recorded as an event.

The node agent decides (``agent.plan``) and reports the VMI status; this applies what it decided
and tells it, through ``write``, of the two status writes that happen meanwhile: the operations in
flight when they outlast the grace (or at once for a disk, whose image takes time to prepare), and
a volume's ``AttachedToNode`` phase once its image is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, assert_never

from vmplane.agent.hotplug import (
    AttachDisk,
    AttachNic,
    ChangeMedium,
    DetachDisk,
    DetachNic,
    Operation,
    SetLink,
    SetMemory,
    SetSockets,
)
from vmplane.agent.plan import Sync
from vmplane.agent.status import attached_to_node
from vmplane.api.events import EventSink
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from vmplane.host.paths import MachineSpecError
from vmplane.hypervisor.base import (
    Hypervisor,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    ObservedMachine,
)
from vmplane.store.base import ConflictError, JsonObject

__all__ = ["InPlaceOperations", "StatusWriter", "VolumePreparer"]

#: Stores a VMI status (``vmi`` and ``raw`` as last read) and returns the VMI as stored.
StatusWriter = Callable[
    [VirtualMachineInstance, JsonObject, VirtualMachineInstanceStatus], Awaitable[JsonObject]
]


def _ignore_hotplug(kind: str, succeeded: bool, seconds: float) -> None:
    """The default ``on_hotplug``: nothing is counted."""


class VolumePreparer(Protocol):
    """Creates the files a machine's disks need before it boots or a disk is hot-plugged."""

    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None:
        """Make every disk of ``spec`` exist on this host (idempotent)."""
        ...

    async def release(self, vmi: VirtualMachineInstance) -> None:
        """Remove the files that live and die with the VMI."""
        ...


class InPlaceOperations:
    """Hot-plugs through ``hypervisor``; ``write`` stores a VMI status, ``events`` records outcomes,
    ``preparer`` makes a disk's image before it is attached; each unplug waits ``unplug_timeout``
    seconds at most; operations are reported in flight once they outlast ``in_flight_grace``."""

    def __init__(
        self,
        *,
        hypervisor: Hypervisor,
        events: EventSink,
        preparer: VolumePreparer | None,
        write: StatusWriter,
        unplug_timeout: float,
        in_flight_grace: float,
    ) -> None:
        self._hypervisor = hypervisor
        self._events = events
        self._preparer = preparer
        self._write = write
        self._unplug_timeout = unplug_timeout
        self._in_flight_grace = in_flight_grace
        #: Told each operation's name, whether it succeeded and how long it took (the composition
        #: root points it at ``metrics.Metrics.hotplug``).
        self.on_hotplug: Callable[[str, bool, float], None] = _ignore_hotplug

    async def _observe(self, machine: str) -> ObservedMachine | None:
        try:
            return await self._hypervisor.observe(machine)
        except MachineNotFoundError:
            return None

    async def apply(
        self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str, plan: Sync, failures: dict[str, str]
    ) -> tuple[VirtualMachineInstance, JsonObject]:
        """Apply the plan's hotplugs, reporting them in flight only when they outlast the grace.

        What QEMU does at once (a vCPU, a DIMM, a NIC) is then one status write, the result, rather
        than a True condition removed a moment later (and the VM's mirror of both). A disk attach is
        reported first: preparing its image takes time and writes the volume's phase meanwhile."""
        assert plan.desired is not None
        assert plan.in_flight is not None
        if any(isinstance(op, AttachDisk | ChangeMedium) for op in plan.operations):
            raw = await self._write(vmi, raw, plan.in_flight)
            vmi = VirtualMachineInstance.model_validate(raw)
            return await self._perform(vmi, raw, machine, plan.desired, plan.operations, failures)
        # These operations write nothing to the VMI, so the report cannot race them.
        work = asyncio.ensure_future(
            self._perform(vmi, raw, machine, plan.desired, plan.operations, failures)
        )
        try:
            done, _ = await asyncio.wait({work}, timeout=self._in_flight_grace)
            if not done:
                with contextlib.suppress(ConflictError):  # only a report: the final write settles it
                    raw = await self._write(vmi, raw, plan.in_flight)
                    vmi = VirtualMachineInstance.model_validate(raw)
            await work
        finally:
            if not work.done():
                work.cancel()
        return vmi, raw

    async def _perform(
        self,
        vmi: VirtualMachineInstance,
        raw: JsonObject,
        machine: str,
        desired: MachineSpec,
        pending: Sequence[Operation],
        failures: dict[str, str],
    ) -> tuple[VirtualMachineInstance, JsonObject]:
        """Apply ``pending`` in order, recording each outcome as an event and each failure in ``failures``;
        returns the VMI as last written (a volume's ``AttachedToNode`` phase once its image is ready)."""
        for op in pending:
            if op.path in failures:
                continue  # e.g. the plug half of a volume swap whose unplug failed
            started = time.monotonic()
            try:
                if isinstance(op, AttachDisk | ChangeMedium) and self._preparer is not None:
                    await self._preparer.prepare(vmi, desired)
                    if vmi.status is not None:
                        raw = await self._write(vmi, raw, attached_to_node(vmi.status, op.disk.name))
                        vmi = VirtualMachineInstance.model_validate(raw)
                await self._apply(machine, op)
            except MachineNotFoundError:
                return vmi, raw
            except (HypervisorError, MachineSpecError, OSError) as err:  # the preparer's too
                now = await self._observe(machine)
                if now is None or now.state is not MachineState.RUNNING:
                    return vmi, raw  # the machine ended meanwhile: that is not a failed hotplug
                self.on_hotplug(op.name, False, time.monotonic() - started)
                failures[op.path] = str(err)
                message = f"{op.path}: {op.before} -> {op.after} failed: {err}"
                await self._events.record(raw, type="Warning", reason="HotplugFailed", message=message)
                continue
            self.on_hotplug(op.name, True, time.monotonic() - started)
            elapsed = (time.monotonic() - started) * 1000
            message = f"{op.path}: {op.before} -> {op.after} in {elapsed:.0f} ms"
            await self._events.record(raw, type="Normal", reason="HotplugApplied", message=message)
        return vmi, raw

    async def _apply(self, machine: str, op: Operation) -> None:
        hv, timeout = self._hypervisor, self._unplug_timeout
        match op:
            case SetSockets(sockets=sockets):
                await hv.set_sockets(machine, sockets)
            case SetMemory(memory_bytes=memory_bytes):
                await hv.set_memory(machine, memory_bytes)
            case AttachDisk(disk=disk):
                await hv.attach_disk(machine, disk)
            case DetachDisk(device=device):
                await hv.detach_disk(machine, device, timeout=timeout)
            case ChangeMedium(disk=disk):
                await hv.change_medium(machine, disk)
            case AttachNic(nic=nic):
                await hv.attach_nic(machine, nic)
            case DetachNic(device=device):
                await hv.detach_nic(machine, device, timeout=timeout)
            case SetLink(device=device, link_up=link_up):
                await hv.set_link(machine, device, up=link_up)
            case _:
                assert_never(op)
