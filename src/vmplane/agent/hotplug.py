"""What to do to a running machine so it has what its VMI spec says: a list of operations. Pure.

``desired`` is the ``MachineSpec`` of the VMI spec as it is now (``machine.machine_spec``), ``observed``
what the hypervisor reports. Only what can change in place is compared: sockets, memory, disks whose
volume is hotpluggable, NICs (present or not, and their link). Every operation names the VMI spec
path it serves, the same path ``rollout.observed`` reads failures under, so a failed operation is
recorded and skipped per path until the spec and the guest agree again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from vmplane.agent.hypervisor import DiskSpec, MachineSpec, NicSpec, ObservedMachine
from vmplane.api.quantity import Quantity

__all__ = [
    "ABSENT",
    "CPU_FIELD",
    "MEMORY_FIELD",
    "Operation",
    "OperationKind",
    "differing_fields",
    "interface_field",
    "named",
    "operations",
    "volume_field",
]

CPU_FIELD = "domain.cpu.sockets"
MEMORY_FIELD = "domain.memory.guest"
_VOLUME = "volumes[name="
_INTERFACE = "domain.devices.interfaces[name="
#: How an operation's before/after shows a device that is not there.
ABSENT = "absent"


def volume_field(name: str) -> str:
    """The VMI spec path of a volume (and of the disk of the same name)."""
    return f"{_VOLUME}{name}]"


def interface_field(name: str) -> str:
    """The VMI spec path of an interface."""
    return f"{_INTERFACE}{name}]"


def named(field: str) -> tuple[str, str] | None:
    """``("volume"|"interface", name)`` for a device path; None for the CPU and memory paths."""
    for kind, prefix in (("volume", _VOLUME), ("interface", _INTERFACE)):
        if field.startswith(prefix) and field.endswith("]"):
            return kind, field[len(prefix) : -1]
    return None


class OperationKind(str, Enum):
    """One kind of in-place change, as a Hypervisor method does it."""

    SET_SOCKETS = "set_sockets"
    SET_MEMORY = "set_memory"
    ATTACH_DISK = "attach_disk"
    DETACH_DISK = "detach_disk"
    ATTACH_NIC = "attach_nic"
    DETACH_NIC = "detach_nic"
    SET_LINK = "set_link"


@dataclass(frozen=True, slots=True)
class Operation:
    """One change to make. ``field`` is the VMI spec path; ``before``/``after`` are for people.

    Exactly the argument the kind needs is set: ``sockets``, ``memory_bytes``, ``disk``/``nic`` to
    attach, ``device`` to detach or relink (with ``link_up``).
    """

    kind: OperationKind
    field: str
    before: str
    after: str
    sockets: int | None = None
    memory_bytes: int | None = None
    disk: DiskSpec | None = None
    nic: NicSpec | None = None
    device: str | None = None
    link_up: bool | None = None


def _size(n: int) -> str:
    return str(Quantity.from_bytes(n))


def _link(up: bool) -> str:
    return "up" if up else "down"


def _disk_ops(desired: MachineSpec, observed: ObservedMachine) -> tuple[list[Operation], list[Operation]]:
    have = {d.name: d for d in observed.disks}
    want = {d.name: d for d in desired.disks}
    detach: list[Operation] = []
    attach: list[Operation] = []
    for name, present in have.items():
        moved = name in want and want[name].hotpluggable and want[name].path != present.path
        if name not in want or moved:
            detach.append(
                Operation(OperationKind.DETACH_DISK, volume_field(name), present.path, ABSENT, device=name)
            )
    for name, disk in want.items():
        # A disk that is not hotpluggable is never plugged in place: it came with the boot, or the
        # planner kept its change pending.
        if disk.hotpluggable and (name not in have or have[name].path != disk.path):
            before = have[name].path if name in have else ABSENT
            attach.append(
                Operation(OperationKind.ATTACH_DISK, volume_field(name), before, disk.path, disk=disk)
            )
    return detach, attach


def _nic_ops(desired: MachineSpec, observed: ObservedMachine) -> tuple[list[Operation], list[Operation]]:
    have = {n.name: n for n in observed.nics}
    want = {n.name: n for n in desired.nics}
    detach = [
        Operation(OperationKind.DETACH_NIC, interface_field(name), nic.mac, ABSENT, device=name)
        for name, nic in have.items()
        if name not in want  # removed, or ``state: absent`` (machine_spec leaves those out)
    ]
    other: list[Operation] = []
    for name, nic in want.items():
        field = interface_field(name)
        if name not in have:
            other.append(Operation(OperationKind.ATTACH_NIC, field, ABSENT, nic.mac, nic=nic))
        elif have[name].link_up != nic.link_up:
            other.append(
                Operation(
                    OperationKind.SET_LINK,
                    field,
                    _link(have[name].link_up),
                    _link(nic.link_up),
                    device=name,
                    link_up=nic.link_up,
                )
            )
    return detach, other


def operations(
    desired: MachineSpec, observed: ObservedMachine, *, skip: Collection[str] = ()
) -> list[Operation]:
    """The operations that give ``observed`` what ``desired`` has, leaving the ``skip`` paths alone.

    Order: unplugs first (they free PCIe ports), then plugs and link changes, then vCPUs and memory.
    """
    disk_detach, disk_attach = _disk_ops(desired, observed)
    nic_detach, nic_other = _nic_ops(desired, observed)
    ops = [*disk_detach, *nic_detach, *disk_attach, *nic_other]
    if desired.sockets != observed.sockets:
        ops.append(
            Operation(
                OperationKind.SET_SOCKETS,
                CPU_FIELD,
                str(observed.sockets),
                str(desired.sockets),
                sockets=desired.sockets,
            )
        )
    if desired.memory_bytes != observed.memory_bytes:
        ops.append(
            Operation(
                OperationKind.SET_MEMORY,
                MEMORY_FIELD,
                _size(observed.memory_bytes),
                _size(desired.memory_bytes),
                memory_bytes=desired.memory_bytes,
            )
        )
    return [op for op in ops if op.field not in skip]


def differing_fields(desired: MachineSpec, observed: ObservedMachine) -> set[str]:
    """The VMI spec paths where the guest does not have what the spec says."""
    return {op.field for op in operations(desired, observed)}
