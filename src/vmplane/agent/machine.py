"""From a VMI to the ``MachineSpec`` a Hypervisor boots: a translation that creates and opens nothing.

Drivers know nothing of Kubernetes objects, so everything they need is decided here: the machine's
name (``<namespace>_<name>``), its UUID, vCPU topology and memory with their hotplug ceilings, disks,
NICs with stable MACs, and direct kernel boot. *Where* a volume's image lives on this host is the
``VolumeResolver``'s business; creating those files is a separate preparation step's.

A VMI may reach the agent without admission (written straight into the store), so every value that
becomes a file name or a QEMU option is checked again here with admission's rules (``api.names``):
names, claim names, image references, paths inside images, the machine type, CPU model and UUID.
``HostPaths`` also confines each path it returns after resolving symlinks (the only I/O here: it
reads links, never creates or opens a file), so a link planted in the data directory cannot point a
disk at another namespace's claim or outside the volume and image trees.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Literal

from vmplane.api import domain, names
from vmplane.api.spec_rules import HOST_CPU_MODELS, Q35_MACHINE
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import Volume
from vmplane.host.paths import (
    MachineSpecError,
    VolumeResolver,
    check_label,
    check_subdomain,
)
from vmplane.hypervisor.base import DiskSpec, MachineSpec, NicSpec

__all__ = [
    "interface_mac",
    "machine_name",
    "machine_spec",
    "vmi_key_of",
]

# KubeVirt's CPU models that mean "the host's CPU": the driver picks ``host`` under KVM, its default
# under TCG (``host`` cannot be emulated).
_HOST_CPU_MODELS = HOST_CPU_MODELS
_BUSES: dict[str, Literal["virtio", "sata", "scsi"]] = {"virtio": "virtio", "sata": "sata", "scsi": "scsi"}
_MIB = 1024 * 1024


def machine_name(namespace: str, name: str) -> str:
    """The hypervisor's name of a VMI's machine: ``<namespace>_<name>``.

    ``_`` never occurs in a namespace (a DNS label) or a VMI name (a DNS subdomain), so the name is
    unambiguous, and it is a valid file name for drivers that keep a directory per machine.
    """
    return f"{namespace}_{name}"


def vmi_key_of(machine: str) -> tuple[str, str]:
    """The ``(namespace, name)`` of the VMI a machine runs; the inverse of ``machine_name``."""
    namespace, _, name = machine.partition("_")
    return namespace, name


def interface_mac(vmi_uid: str, interface: domain.Interface) -> str:
    """The interface's ``macAddress``, or a stable locally administered one from the VMI uid and name.

    Stable because a NIC hotplugged later must get the MAC a boot-time one would have had.
    """
    if interface.mac_address:
        return interface.mac_address.replace("-", ":").lower()
    digest = hashlib.sha256(f"{vmi_uid}/{interface.name}".encode()).digest()
    # 0x02: locally administered, unicast; the rest from the digest.
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _disk_spec(
    vmi: VirtualMachineInstance, disk: domain.Disk, volume: Volume | None, resolver: VolumeResolver
) -> DiskSpec:
    """The block device of ``disk``; a CD-ROM with no ``volume`` is an empty drive."""
    where = f"spec.domain.devices.disks[name={disk.name}]"
    check_label(f"{where}.name", disk.name, MachineSpecError)
    for message in names.serial_errors(where, disk.serial or ""):
        raise MachineSpecError(message)
    target: domain.DiskTarget | domain.CDRomTarget | domain.LunTarget | None
    cdrom = disk.cdrom is not None
    if disk.cdrom is not None:
        target, default_bus, readonly = disk.cdrom, "sata", True
    elif disk.lun is not None:
        target, default_bus, readonly = disk.lun, "scsi", False
    else:
        target, default_bus, readonly = disk.disk, "virtio", False
    wanted = (target.bus if target is not None else None) or default_bus
    bus = _BUSES.get(wanted)
    if bus is None:
        raise MachineSpecError(f"{where}: bus {wanted!r} is not supported (virtio, sata or scsi)")
    if target is not None and target.readonly is not None:
        readonly = target.readonly
    if volume is None:
        return DiskSpec(name=disk.name, path="", bus=bus, cdrom=True, readonly=True, serial=disk.serial)
    found = resolver.resolve(vmi, volume)
    return DiskSpec(
        name=disk.name,
        path=found.path,
        format=found.format,
        bus=bus,
        cdrom=cdrom,
        readonly=readonly or found.readonly,
        serial=disk.serial,
        hotpluggable=volume.hotpluggable,
    )


def _nic_specs(vmi: VirtualMachineInstance, uid: str) -> tuple[NicSpec, ...]:
    nics = []
    for interface in vmi.spec.domain.devices.interfaces or ():
        if interface.state == "absent":
            continue
        if not names.interface_name_ok(interface.name):
            raise MachineSpecError(
                f"spec.domain.devices.interfaces[name={interface.name}].name: {names.INTERFACE_NAME_MESSAGE}"
            )
        if interface.mac_address is not None and not names.MAC_ADDRESS.fullmatch(interface.mac_address):
            raise MachineSpecError(
                f"spec.domain.devices.interfaces[name={interface.name}].macAddress: "
                f"{interface.mac_address!r} is not a MAC address"
            )
        nics.append(
            NicSpec(
                name=interface.name,
                mac=interface_mac(uid, interface),
                model=interface.model or "virtio",
                link_up=interface.state != "down",
            )
        )
    return tuple(nics)


def _memory(vmi: VirtualMachineInstance) -> tuple[int, int | None]:
    dom = vmi.spec.domain
    guest = dom.memory.guest if dom.memory is not None else None
    if guest is None and dom.resources is not None:
        guest = (dom.resources.requests or {}).get("memory") or (dom.resources.limits or {}).get("memory")
    if guest is None:
        raise MachineSpecError("spec.domain.memory.guest: not set (nor a memory request or limit)")
    max_guest = dom.memory.max_guest if dom.memory is not None else None
    ceiling = _whole_mib(max_guest.bytes()) if max_guest is not None and max_guest > guest else None
    return _whole_mib(guest.bytes()), ceiling


def _whole_mib(size: int) -> int:
    """``size`` rounded up to a whole MiB, QEMU's granularity, as libvirt aligns KubeVirt's sizes
    (``guest: 1024M`` is 1,024,000,000 bytes); boot and hotplug round alike, so the observed size matches."""
    return -(-size // _MIB) * _MIB


def machine_spec(
    vmi: VirtualMachineInstance,
    *,
    resolver: VolumeResolver | None = None,
    paths: VolumeResolver | None = None,
) -> MachineSpec:
    """The machine that runs ``vmi`` now (its spec as it is, hotplugged changes included).

    ``paths`` is ``resolver`` under its earlier name. Raises MachineSpecError (VolumeError for
    volumes) naming the field it cannot translate.
    """
    found = resolver if resolver is not None else paths
    if found is None:
        raise TypeError("machine_spec needs a resolver")
    resolver = found
    meta = vmi.metadata
    namespace, name = meta.namespace or "default", meta.name or ""
    check_label("metadata.namespace", namespace, MachineSpecError)
    check_subdomain("metadata.name", name, MachineSpecError)
    dom = vmi.spec.domain
    cpu = dom.cpu or domain.CPU()
    machine = (dom.machine.type if dom.machine is not None else None) or "q35"
    if not Q35_MACHINE.fullmatch(machine):
        raise MachineSpecError(
            f"spec.domain.machine.type: {machine!r} is not supported (a q35 machine: q35, pc-q35-<version>)"
        )
    cpu_model = None if cpu.model in _HOST_CPU_MODELS else cpu.model
    if cpu_model is not None and not names.CPU_MODEL.fullmatch(cpu_model):
        raise MachineSpecError(f"spec.domain.cpu.model: {cpu_model!r} is not a CPU model name")
    sockets = cpu.sockets or 1
    if cpu.max_sockets and cpu.max_sockets < sockets:
        raise MachineSpecError(f"spec.domain.cpu.maxSockets: {cpu.max_sockets} is below sockets {sockets}")
    memory_bytes, max_memory_bytes = _memory(vmi)
    volumes = {v.name: v for v in vmi.spec.volumes or ()}
    disks = []
    for disk in dom.devices.disks or ():
        volume = volumes.get(disk.name)
        if volume is None and disk.cdrom is None:
            raise MachineSpecError(f"spec.domain.devices.disks[name={disk.name}]: no volume of that name")
        disks.append(_disk_spec(vmi, disk, volume, resolver))
    uid = meta.uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmplane:{namespace}/{name}"))
    firmware = dom.firmware
    kernel = firmware.kernel_boot if firmware is not None else None
    firmware_uuid = firmware.uuid if firmware is not None else None
    if firmware_uuid is not None and not names.UUID.fullmatch(firmware_uuid):
        raise MachineSpecError(f"spec.domain.firmware.uuid: {firmware_uuid!r} is not a UUID")
    # A uid is a UUID when the store made it; one from elsewhere still gives the guest a stable UUID.
    uid_uuid = uid if names.UUID.fullmatch(uid) else str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmplane:uid:{uid}"))
    return MachineSpec(
        name=machine_name(namespace, name),
        uuid=firmware_uuid or uid_uuid,
        sockets=sockets,
        cores=cpu.cores or 1,
        threads=cpu.threads or 1,
        max_sockets=cpu.max_sockets or 0,
        memory_bytes=memory_bytes,
        max_memory_bytes=max_memory_bytes,
        machine=machine,
        cpu_model=cpu_model,
        disks=tuple(disks),
        nics=_nic_specs(vmi, uid),
        kernel_boot=resolver.kernel_boot(vmi, kernel) if kernel is not None else None,
    )
