"""What to do to a running machine so it has what its VMI spec says: a list of operations. Pure.

``desired`` is the ``MachineSpec`` of the VMI spec as it is now (``machine.machine_spec``), ``observed``
what the hypervisor reports. Only what can change in place is compared: sockets, memory, disks whose
volume is hotpluggable, the media of CD-ROM drives, NICs (present or not, and their link).
Operations are a tagged union (one frozen dataclass per driver call, ``Operation``), so the agent's
``match`` over them is checked for exhaustiveness by mypy. Every operation names the VMI spec path it
serves (``rollout.fields``), the same path a failed hotplug is recorded under, so a failed operation
is recorded and skipped per path until the spec and the guest agree again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import ClassVar

from vmplane.api.quantity import Quantity
from vmplane.hypervisor.base import DiskSpec, MachineSpec, NicSpec, ObservedMachine
from vmplane.rollout.fields import CPU_SOCKETS, MEMORY_GUEST, LiveKind, interface_path, volume_path

__all__ = [
    "ABSENT",
    "AGENT_OPERATIONS",
    "AttachDisk",
    "AttachNic",
    "ChangeMedium",
    "DetachDisk",
    "DetachNic",
    "Operation",
    "SetLink",
    "SetMemory",
    "SetSockets",
    "differing_fields",
    "operations",
]

#: How an operation's before/after shows a device that is not there.
ABSENT = "absent"


# One class per in-place change, as one Hypervisor method does it (``name``: that method's name;
# ``kind``: its live field family). ``path`` is the VMI spec path the operation serves
# (``rollout.fields``); ``before``/``after`` are for people; each carries exactly the argument its
# driver call needs.


@dataclass(frozen=True, slots=True)
class SetSockets:
    name: ClassVar[str] = "set_sockets"
    kind: ClassVar[LiveKind] = LiveKind.CPU
    path: str
    before: str
    after: str
    sockets: int


@dataclass(frozen=True, slots=True)
class SetMemory:
    name: ClassVar[str] = "set_memory"
    kind: ClassVar[LiveKind] = LiveKind.MEMORY
    path: str
    before: str
    after: str
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class AttachDisk:
    name: ClassVar[str] = "attach_disk"
    kind: ClassVar[LiveKind] = LiveKind.DISK
    path: str
    before: str
    after: str
    disk: DiskSpec


@dataclass(frozen=True, slots=True)
class DetachDisk:
    name: ClassVar[str] = "detach_disk"
    kind: ClassVar[LiveKind] = LiveKind.DISK
    path: str
    before: str
    after: str
    device: str


@dataclass(frozen=True, slots=True)
class ChangeMedium:
    """Insert, change or eject (``disk.empty``) the medium of a CD-ROM drive that stays plugged."""

    name: ClassVar[str] = "change_medium"
    kind: ClassVar[LiveKind] = LiveKind.DISK
    path: str
    before: str
    after: str
    disk: DiskSpec


@dataclass(frozen=True, slots=True)
class AttachNic:
    name: ClassVar[str] = "attach_nic"
    kind: ClassVar[LiveKind] = LiveKind.INTERFACE
    path: str
    before: str
    after: str
    nic: NicSpec


@dataclass(frozen=True, slots=True)
class DetachNic:
    name: ClassVar[str] = "detach_nic"
    kind: ClassVar[LiveKind] = LiveKind.INTERFACE
    path: str
    before: str
    after: str
    device: str


@dataclass(frozen=True, slots=True)
class SetLink:
    name: ClassVar[str] = "set_link"
    kind: ClassVar[LiveKind] = LiveKind.INTERFACE
    path: str
    before: str
    after: str
    device: str
    link_up: bool


Operation = SetSockets | SetMemory | AttachDisk | DetachDisk | ChangeMedium | AttachNic | DetachNic | SetLink

#: What the agent does to a guest for each live field family. Placement has no operation: a live
#: placement change binds the VMI's next start, and the running guest stays where it is.
AGENT_OPERATIONS: Mapping[LiveKind, tuple[type[Operation], ...]] = {
    LiveKind.CPU: (SetSockets,),
    LiveKind.MEMORY: (SetMemory,),
    LiveKind.PLACEMENT: (),
    LiveKind.DISK: (AttachDisk, DetachDisk, ChangeMedium),
    LiveKind.INTERFACE: (AttachNic, DetachNic, SetLink),
}


def _size(n: int) -> str:
    return str(Quantity.from_bytes(n))


def _link(up: bool) -> str:
    return "up" if up else "down"


def _medium(path: str) -> str:
    return path or ABSENT


def _disk_ops(
    desired: MachineSpec, observed: ObservedMachine
) -> tuple[list[DetachDisk], list[AttachDisk | ChangeMedium]]:
    have = {d.name: d for d in observed.disks}
    want = {d.name: d for d in desired.disks}
    detach: list[DetachDisk] = []
    other: list[AttachDisk | ChangeMedium] = []
    for name, disk in want.items():
        present = have.get(name)
        # A CD-ROM drive stays plugged (IDE and SCSI CD-ROM drives are not unplugged) while its
        # medium comes and goes, as upstream's inject/eject; the drive itself is the boot's.
        if disk.cdrom and present is not None and present.cdrom and present.path != disk.path:
            other.append(
                ChangeMedium(volume_path(name), _medium(present.path), _medium(disk.path), disk=disk)
            )
    for name, present in have.items():
        wanted = want.get(name)
        if wanted is not None and wanted.cdrom and present.cdrom:
            continue
        moved = wanted is not None and wanted.hotpluggable and wanted.path != present.path
        if wanted is None or moved:
            detach.append(DetachDisk(volume_path(name), present.path, ABSENT, device=name))
    for name, disk in want.items():
        # A disk that is not hotpluggable is never plugged in place: it came with the boot, or the
        # planner kept its change pending.
        if disk.cdrom and name in have and have[name].cdrom:
            continue
        if disk.hotpluggable and (name not in have or have[name].path != disk.path):
            before = have[name].path if name in have else ABSENT
            other.append(AttachDisk(volume_path(name), before, disk.path, disk=disk))
    return detach, other


def _nic_ops(
    desired: MachineSpec, observed: ObservedMachine
) -> tuple[list[DetachNic], list[AttachNic | SetLink]]:
    have = {n.name: n for n in observed.nics}
    want = {n.name: n for n in desired.nics}
    detach = [
        DetachNic(interface_path(name), nic.mac, ABSENT, device=name)
        for name, nic in have.items()
        if name not in want  # removed, or ``state: absent`` (machine_spec leaves those out)
    ]
    other: list[AttachNic | SetLink] = []
    for name, nic in want.items():
        path = interface_path(name)
        if name not in have:
            other.append(AttachNic(path, ABSENT, nic.mac, nic=nic))
        elif have[name].link_up != nic.link_up:
            other.append(
                SetLink(path, _link(have[name].link_up), _link(nic.link_up), device=name, link_up=nic.link_up)
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
    ops: list[Operation] = [*disk_detach, *nic_detach, *disk_attach, *nic_other]
    if desired.sockets != observed.sockets:
        ops.append(
            SetSockets(CPU_SOCKETS, str(observed.sockets), str(desired.sockets), sockets=desired.sockets)
        )
    if desired.memory_bytes != observed.memory_bytes:
        ops.append(
            SetMemory(
                MEMORY_GUEST,
                _size(observed.memory_bytes),
                _size(desired.memory_bytes),
                memory_bytes=desired.memory_bytes,
            )
        )
    return [op for op in ops if op.path not in skip]


def differing_fields(desired: MachineSpec, observed: ObservedMachine) -> set[str]:
    """The VMI spec paths where the guest does not have what the spec says."""
    return {op.path for op in operations(desired, observed)}
