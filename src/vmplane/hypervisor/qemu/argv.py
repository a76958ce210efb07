"""The QEMU command line for a ``MachineSpec``: a pure function, no I/O.

Every guest boots with its hotplug headroom, whatever the rollout strategy (docs/rollout.md §4):

* vCPUs: ``-smp <initial>,sockets=<max_sockets>,...,maxcpus=...``. QEMU 7.2 reads ``sockets`` as the
  *maximum* socket count (``sockets=1,maxcpus=4`` is refused as an invalid topology), so the boot count
  goes in the first field and free sockets are plugged later by ``query-hotpluggable-cpus`` slots.
* Memory: ``-m <boot>,slots=DIMM_SLOTS,maxmem=<max>`` so pc-dimm devices can be added up to ``max``.
* PCIe: q35's root complex refuses hotplug, so every PCIe device sits on its own ``pcie-root-port``
  (``rp<N>``, slot N+1 of ``pcie.0``): one per boot-time virtio disk, NIC and the SCSI controller, plus
  ``spare_root_ports`` free ones for hotplug, and one for the virtio-serial controller whose port
  ``org.qemu.guest_agent.0`` is the guest agent's channel (a unix socket in the run directory).
* SCSI: every guest boots with a virtio-scsi controller (``scsi0``, as upstream's hotplug controller),
  so a ``scsi`` disk can be hot-plugged to it without a root port of its own.

Guests start paused (``-S``): the driver connects QMP, applies what the command line cannot say (a
NIC booted with its link down) and then sends ``cont``.

No spec value can add an option: ``-blockdev``, ``-device`` and ``-netdev`` use QEMU's JSON syntax
(QEMU 7.2 takes JSON for all three), so paths and names need no comma escaping and a NIC's netdev can
never gain ``hostfwd=``, ``guestfwd=`` or ``smb=``. The legacy ``key=value`` options left carry only
values the driver chose (run-directory paths, with ``,`` doubled) or values refused unless they have
no option syntax at all: the machine type (a q35 name, never ``q35,firmware=...``), the CPU model and
the UUID. ``-kernel``, ``-initrd`` and ``-append`` are plain strings to QEMU. No argument may hold a
NUL, which ``execve`` cannot pass.

QEMU runs under its seccomp sandbox (``SANDBOX``): no obsolete syscalls, no ``setuid``/``setgid``
(``elevateprivileges=deny``, which is also why QEMU is *started* as its unprivileged user rather than
given ``-runas``), no ``fork``/``exec`` (``spawn=deny``), no scheduler or affinity changes. QEMU 7.2
applies it after parsing the command line, and hotplug of vCPUs, DIMMs, disks and NICs still works.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmplane.api.names import CPU_MODEL, UUID
from vmplane.api.spec_rules import Q35_MACHINE
from vmplane.hypervisor.base import DiskSpec, MachineSpec, NicSpec
from vmplane.hypervisor.qemu import naming

__all__ = [
    "DIMM_SLOTS",
    "MAX_ROOT_PORTS",
    "MIB",
    "NIC_DRIVERS",
    "SANDBOX",
    "SCSI_BUS",
    "SCSI_CONTROLLER",
    "SERIAL_BUS",
    "Placement",
    "Slot",
    "blockdev_node",
    "boot_placement",
    "boot_root_ports",
    "build_argv",
    "disk_at",
    "disk_device",
    "nic_device",
    "scsi_hotplug_device",
]

MIB = 1 << 20
#: pc-dimm slots reserved at boot; each memory increase uses one, each decrease frees some.
DIMM_SLOTS = 16
#: Slots 1..30 of ``pcie.0`` (slot 31 holds q35's ICH9 functions).
MAX_ROOT_PORTS = 30
#: Linux's ``sun_path`` limit: QEMU cannot bind a longer QMP socket path.
_MAX_SOCKET_PATH = 107
_SATA_PORTS = 6  # q35's built-in AHCI controller: ide.0 .. ide.5
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", re.ASCII)

#: The virtio-serial controller that carries the guest agent's channel.
SERIAL_BUS = "virtio-serial0"
#: The virtio-scsi controller every guest boots with, and its bus.
SCSI_CONTROLLER = "scsi0"
SCSI_BUS = "scsi0.0"

#: ``-sandbox``: QEMU's seccomp filter, every optional deny on.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

NIC_DRIVERS: dict[str, str] = {
    "virtio": "virtio-net-pci",
    "e1000e": "e1000e",
    "e1000": "e1000",
    "rtl8139": "rtl8139",
}


def _json(obj: Mapping[str, object]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _opt(value: object) -> str:
    """A value inside a QEMU ``key=value,...`` option string (commas are doubled)."""
    return str(value).replace(",", ",,")


def _mib(value: int, what: str) -> int:
    if value <= 0 or value % MIB:
        raise ValueError(f"{what} must be a positive multiple of 1 MiB, got {value}")
    return value // MIB


def _on_root_port(disk: DiskSpec) -> bool:
    return disk.bus == "virtio" and not disk.cdrom


def boot_root_ports(spec: MachineSpec) -> int:
    """Root ports taken at boot: one per virtio disk and NIC, one for the SCSI controller, and the
    guest agent's virtio-serial controller (the last one, so disks and NICs keep their ports)."""
    return sum(_on_root_port(d) for d in spec.disks) + len(spec.nics) + 2


def _smp(spec: MachineSpec) -> list[str]:
    for what, value in (("sockets", spec.sockets), ("cores", spec.cores), ("threads", spec.threads)):
        if value < 1:
            raise ValueError(f"{what} must be at least 1, got {value}")
    max_sockets = spec.max_sockets or spec.sockets
    if max_sockets < spec.sockets:
        raise ValueError(f"max_sockets {max_sockets} is below sockets {spec.sockets}")
    per_socket = spec.cores * spec.threads
    return [
        "-smp",
        f"{spec.sockets * per_socket},sockets={max_sockets},cores={spec.cores},"
        f"threads={spec.threads},maxcpus={max_sockets * per_socket}",
    ]


def _memory(spec: MachineSpec) -> list[str]:
    boot = _mib(spec.memory_bytes, "memory_bytes")
    if spec.max_memory_bytes is None or spec.max_memory_bytes == spec.memory_bytes:
        return ["-m", f"size={boot}M"]
    top = _mib(spec.max_memory_bytes, "max_memory_bytes")
    if top < boot:
        raise ValueError(
            f"max_memory_bytes {spec.max_memory_bytes} is below memory_bytes {spec.memory_bytes}"
        )
    return ["-m", f"size={boot}M,slots={DIMM_SLOTS},maxmem={top}M"]


def _root_port(index: int) -> list[str]:
    port = {
        "driver": "pcie-root-port",
        "id": naming.root_port_id(index),
        "bus": "pcie.0",
        "chassis": index + 1,
        "addr": f"0x{index + 1:x}.0",
    }
    return ["-device", _json(port)]


def blockdev_node(disk: DiskSpec) -> dict[str, object]:
    """The ``-blockdev``/``blockdev-add`` options of a disk (format node over a file node)."""
    readonly = disk.readonly or disk.cdrom
    return {
        "driver": disk.format,
        "node-name": naming.drive_node(disk.name),
        "read-only": readonly,
        "file": {"driver": "file", "filename": disk.path, "read-only": readonly},
    }


def disk_device(
    disk: DiskSpec, *, port: str | None, sata: int | None, scsi_lun: int | None
) -> dict[str, object]:
    """The ``-device``/``device_add`` options of a disk: on a root port, the SCSI bus or a SATA port."""
    device: dict[str, object] = {"id": naming.disk_device_id(disk.name)}
    if not disk.empty:  # an empty CD-ROM drive has no medium node until one is inserted
        device["drive"] = naming.drive_node(disk.name)
    if port is not None:
        device |= {"driver": "virtio-blk-pci", "bus": port}
    elif scsi_lun is not None:
        device |= {"driver": "scsi-cd" if disk.cdrom else "scsi-hd", "bus": SCSI_BUS, "lun": scsi_lun}
    else:
        device |= {"driver": "ide-cd" if disk.cdrom else "ide-hd", "bus": f"ide.{sata}"}
    if disk.serial is not None:
        device["serial"] = disk.serial
    return device


def scsi_hotplug_device(disk: DiskSpec) -> dict[str, object]:
    """The ``device_add`` options of a SCSI disk hot-plugged to ``scsi0``; QEMU picks a free target."""
    device: dict[str, object] = {
        "driver": "scsi-hd",
        "id": naming.disk_device_id(disk.name),
        "drive": naming.drive_node(disk.name),
        "bus": SCSI_BUS,
    }
    if disk.serial is not None:
        device["serial"] = disk.serial
    return device


def nic_device(nic: NicSpec, port: str) -> dict[str, object]:
    """The ``-device``/``device_add`` options of a NIC on root port ``port``."""
    if nic.model not in NIC_DRIVERS:
        raise ValueError(
            f"NIC {nic.name}: unsupported model {nic.model!r} (supported: {', '.join(NIC_DRIVERS)})"
        )
    if not _MAC.fullmatch(nic.mac):
        raise ValueError(f"NIC {nic.name}: MAC address {nic.mac!r} is not of the form 02:00:00:00:00:01")
    return {
        "driver": NIC_DRIVERS[nic.model],
        "id": naming.nic_device_id(nic.name),
        "netdev": naming.netdev_id(nic.name),
        "mac": nic.mac,
        "bus": port,
    }


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one device sits: ``bus`` (a root port ``rp<N>``, ``scsi0.0`` or a SATA port ``ide.<N>``)
    and, on the SCSI bus, its ``lun`` and ``scsi_id`` (target)."""

    bus: str
    lun: int | None = None
    scsi_id: int | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """The device tree's shape: how many root ports, and the slot of every disk, NIC and controller
    (keyed by QEMU device id). A migration target boots with its source's placement."""

    root_ports: int
    slots: Mapping[str, Slot]


def boot_placement(spec: MachineSpec) -> Placement:
    """Where a fresh boot puts ``spec``'s devices: the boot's root ports in order, the SCSI
    controller on the last of them, CD-ROMs and SATA disks on the AHCI ports."""
    total_ports = boot_root_ports(spec) + spec.spare_root_ports
    if spec.spare_root_ports < 0 or total_ports > MAX_ROOT_PORTS:
        raise ValueError(f"{total_ports} root ports requested; q35 has room for {MAX_ROOT_PORTS}")
    # The SCSI controller takes the last of the boot's ports, so the boot's disks and NICs keep the
    # addresses they had before every guest had one.
    controller = boot_root_ports(spec) - 1
    slots = {SCSI_CONTROLLER: Slot(naming.root_port_id(controller))}
    ports = iter(naming.root_port_id(i) for i in range(total_ports) if i != controller)
    sata = scsi = 0
    for disk in spec.disks:
        device_id = naming.disk_device_id(disk.name)
        if _on_root_port(disk):
            slots[device_id] = Slot(next(ports))
        elif disk.bus == "scsi":
            slots[device_id] = Slot(SCSI_BUS, lun=scsi)
            scsi += 1
        else:  # sata, and virtio cdroms (a CD-ROM cannot be virtio-blk)
            if sata == _SATA_PORTS:
                raise ValueError(f"more than {_SATA_PORTS} SATA disks")
            slots[device_id] = Slot(f"ide.{sata}")
            sata += 1
    for nic in spec.nics:
        slots[naming.nic_device_id(nic.name)] = Slot(next(ports))
    slots[SERIAL_BUS] = Slot(next(ports))
    return Placement(root_ports=total_ports, slots=slots)


def _slot(placement: Placement, device_id: str) -> Slot:
    slot = placement.slots.get(device_id)
    if slot is None:
        raise ValueError(f"the placement has no slot for {device_id}")
    return slot


def disk_at(disk: DiskSpec, slot: Slot) -> dict[str, object]:
    """The ``-device``/``device_add`` options of a disk in ``slot``."""
    if slot.bus.startswith(naming.ROOT_PORT_PREFIX):
        return disk_device(disk, port=slot.bus, sata=None, scsi_lun=None)
    if slot.bus == SCSI_BUS:
        device = disk_device(disk, port=None, sata=None, scsi_lun=slot.lun or 0)
        return device if slot.scsi_id is None else {**device, "scsi-id": slot.scsi_id}
    return disk_device(disk, port=None, sata=int(slot.bus.removeprefix("ide.")), scsi_lun=None)


def _devices(spec: MachineSpec, placement: Placement) -> list[str]:
    if placement.root_ports > MAX_ROOT_PORTS:
        raise ValueError(f"{placement.root_ports} root ports requested; q35 has room for {MAX_ROOT_PORTS}")
    argv: list[str] = []
    for index in range(placement.root_ports):
        argv += _root_port(index)
    controller = {
        "driver": "virtio-scsi-pci",
        "id": SCSI_CONTROLLER,
        "bus": _slot(placement, SCSI_CONTROLLER).bus,
    }
    argv += ["-device", _json(controller)]
    for disk in spec.disks:
        if not disk.empty:
            argv += ["-blockdev", _json(blockdev_node(disk))]
        argv += ["-device", _json(disk_at(disk, _slot(placement, naming.disk_device_id(disk.name))))]
    for nic in spec.nics:
        argv += ["-netdev", _json({"type": "user", "id": naming.netdev_id(nic.name)})]
        argv += ["-device", _json(nic_device(nic, _slot(placement, naming.nic_device_id(nic.name)).bus))]
    serial = {"driver": "virtio-serial-pci", "id": SERIAL_BUS, "bus": _slot(placement, SERIAL_BUS).bus}
    argv += ["-device", _json(serial)]
    channel: dict[str, object] = {
        "driver": "virtserialport",
        "id": "guest-agent",
        "bus": f"{SERIAL_BUS}.0",
        "chardev": "guest-agent",
        "name": naming.GUEST_AGENT_CHANNEL,
    }
    return [*argv, "-device", _json(channel)]


def build_argv(
    spec: MachineSpec,
    *,
    run_dir: Path,
    accel: Literal["kvm", "tcg"],
    qemu_binary: str = "qemu-system-x86_64",
    placement: Placement | None = None,
    incoming: bool = False,
) -> list[str]:
    """The full QEMU argv for ``spec``; ``run_dir`` holds the QMP socket, console log and pidfile.

    ``placement`` (default: ``boot_placement``) says where each device sits; ``incoming`` boots a
    migration target, waiting (``-incoming defer``) for ``migrate-incoming``.

    Raises ``ValueError`` for a spec QEMU would refuse (bad topology, unaligned memory, too many
    ports) so the error names the field instead of surfacing as a QEMU exit.
    """
    files = naming.run_files(run_dir)
    if len(str(files["qmp"])) > _MAX_SOCKET_PATH:
        raise ValueError(f"QMP socket path {files['qmp']} is longer than {_MAX_SOCKET_PATH} bytes")
    if not Q35_MACHINE.fullmatch(spec.machine):
        raise ValueError(f"machine {spec.machine!r}: only q35 machines (q35, pc-q35-<version>) are supported")
    if not UUID.fullmatch(spec.uuid):
        raise ValueError(f"uuid {spec.uuid!r} is not a UUID")
    if spec.cpu_model is not None and not CPU_MODEL.fullmatch(spec.cpu_model):
        raise ValueError(f"CPU model {spec.cpu_model!r} is not a CPU model name")
    cpu_model = spec.cpu_model or ("host" if accel == "kvm" else None)
    argv = [
        qemu_binary,
        "-name",
        f"guest={_opt(spec.name)},debug-threads=on",
        "-uuid",
        spec.uuid,
        "-machine",
        spec.machine,
        "-accel",
        accel,
        *(["-cpu", cpu_model] if cpu_model else []),
        *_smp(spec),
        *_memory(spec),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vnc",
        f"unix:{_opt(files['vnc'])}",
        "-S",
        "-chardev",
        f"socket,id=qmp,path={_opt(files['qmp'])},server=on,wait=off",
        "-mon",
        "chardev=qmp,mode=control",
        "-chardev",
        # A socket the agent bridges to interactive consoles; the log keeps everything the guest wrote.
        f"socket,id=console,path={_opt(files['serial'])},server=on,wait=off,"
        f"logfile={_opt(files['console'])},logappend=on",
        "-serial",
        "chardev:console",
        # The guest agent's channel: a unix socket only the node agent connects to (never a TCP port).
        "-chardev",
        f"socket,id=guest-agent,path={_opt(files['guest-agent'])},server=on,wait=off",
        "-pidfile",
        str(files["pidfile"]),
        "-sandbox",
        SANDBOX,
    ]
    if spec.kernel_boot is not None:
        argv += ["-kernel", spec.kernel_boot.kernel]
        if spec.kernel_boot.initrd is not None:
            argv += ["-initrd", spec.kernel_boot.initrd]
        if spec.kernel_boot.cmdline:
            argv += ["-append", spec.kernel_boot.cmdline]
    argv += _devices(spec, placement or boot_placement(spec))
    if incoming:
        argv += ["-incoming", "defer"]
    if any("\x00" in arg for arg in argv):
        raise ValueError("a value of the spec holds a NUL character, which no command line can pass")
    return argv
