"""What to do to a running machine so it matches its VMI spec: a list of operations. Pure.

The VMI spec says what the guest should have; ``ObservedMachine`` says what it has. Only what can
change in place is compared (sockets up, memory, hotpluggable disks, NICs and their links); the
planner never writes anything else into a running VMI's spec.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from vmplane.agent.hypervisor import DiskSpec, MachineSpec, NicSpec, ObservedMachine

__all__ = ["Operation", "OperationKind", "operations"]


class OperationKind(str, Enum):
    """One kind of in-place change."""

    CPU = "cpu"
    MEMORY = "memory"
    ATTACH_DISK = "attach-disk"
    DETACH_DISK = "detach-disk"
    ATTACH_NIC = "attach-nic"
    DETACH_NIC = "detach-nic"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class Operation:
    """One change: ``field`` names what changes (a VMI spec path), ``before``/``after`` its values."""

    kind: OperationKind
    field: str
    before: object
    after: object
    disk: DiskSpec | None = None
    nic: NicSpec | None = None


def operations(
    desired: MachineSpec,
    observed: ObservedMachine,
    *,
    skip: Collection[str] = (),
) -> list[Operation]:
    """The operations that bring ``observed`` to ``desired``; fields in ``skip`` (failed) are left alone."""
    ops: list[Operation] = []
    if desired.sockets > observed.sockets:
        ops.append(Operation(OperationKind.CPU, "domain.cpu.sockets", observed.sockets, desired.sockets))
    if desired.memory_bytes != observed.memory_bytes:
        ops.append(
            Operation(
                OperationKind.MEMORY, "domain.memory.guest", observed.memory_bytes, desired.memory_bytes
            )
        )
    have_disks = {d.name for d in observed.disks}
    want_disks = {d.name: d for d in desired.disks}
    for disk in desired.disks:
        if disk.name not in have_disks and disk.hotpluggable:
            ops.append(
                Operation(OperationKind.ATTACH_DISK, f"volumes[name={disk.name}]", None, disk.path, disk=disk)
            )
    for have in observed.disks:
        if have.name not in want_disks:
            ops.append(Operation(OperationKind.DETACH_DISK, f"volumes[name={have.name}]", have.path, None))
    have_nics = {n.name: n for n in observed.nics}
    want_nics = {n.name for n in desired.nics}
    for nic in desired.nics:
        field = f"domain.devices.interfaces[name={nic.name}]"
        current = have_nics.get(nic.name)
        if current is None:
            ops.append(Operation(OperationKind.ATTACH_NIC, field, None, nic.mac, nic=nic))
        elif current.link_up != nic.link_up:
            ops.append(
                Operation(OperationKind.LINK, field, _link(current.link_up), _link(nic.link_up), nic=nic)
            )
    for name in have_nics:
        if name not in want_nics:
            ops.append(
                Operation(OperationKind.DETACH_NIC, f"domain.devices.interfaces[name={name}]", name, None)
            )
    return [op for op in ops if op.field not in skip]


def _link(up: bool) -> str:
    return "up" if up else "down"
