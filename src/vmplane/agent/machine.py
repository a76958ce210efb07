"""From a VMI to the ``MachineSpec`` a Hypervisor boots: a pure translation, no I/O.

Drivers know nothing of Kubernetes objects, so everything they need is decided here: the machine's
name (``<namespace>_<name>``), its UUID, vCPU topology and memory with their hotplug ceilings, disks,
NICs with stable MACs, and direct kernel boot. *Where* a volume's image lives on this host is the
``VolumeResolver``'s business; creating those files is a separate preparation step's.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from vmplane.agent.hypervisor import DiskSpec, KernelBoot, MachineSpec, NicSpec
from vmplane.api import domain
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import Volume

__all__ = [
    "DirectoryVolumeResolver",
    "HostPaths",
    "MachineSpecError",
    "VolumeError",
    "VolumeFile",
    "VolumeResolver",
    "interface_mac",
    "machine_name",
    "machine_spec",
    "vmi_key_of",
]

# KubeVirt's CPU models that mean "the host's CPU": the driver picks ``host`` under KVM, its default
# under TCG (``host`` cannot be emulated).
_HOST_CPU_MODELS = frozenset({"host-passthrough", "host-model"})
_BUSES: dict[str, Literal["virtio", "sata", "scsi"]] = {"virtio": "virtio", "sata": "sata", "scsi": "scsi"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class MachineSpecError(ValueError):
    """A VMI this agent cannot turn into a machine; the message names the offending field."""


class VolumeError(MachineSpecError):
    """A volume this host cannot provide."""


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


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """Where a volume's image is on this host and in which format."""

    path: str
    format: Literal["qcow2", "raw"] = "qcow2"
    readonly: bool = False


class VolumeResolver(Protocol):
    """Maps a VMI's volumes (and kernel-boot images) to files on this host."""

    def resolve(self, vmi: VirtualMachineInstance, volume: Volume) -> VolumeFile:
        """The image backing ``volume``; raises VolumeError for a source this host cannot provide."""
        ...

    def kernel_boot(self, vmi: VirtualMachineInstance, boot: domain.KernelBoot) -> KernelBoot:
        """The kernel and initrd of ``firmware.kernelBoot``; raises VolumeError if unavailable."""
        ...


@dataclass(frozen=True, slots=True)
class HostPaths:
    """The ``VolumeResolver`` of one data directory: the layout ``agent.volumes`` creates files in.

    * PVC and DataVolume claims: ``<root>/volumes/<ns>/claims/<claim>.qcow2`` (they outlive VMIs);
    * the VMI directory ``<root>/volumes/<ns>/vmis/<name>`` holds ``emptyDisk`` images
      (``<volume>.qcow2``), cloud-init seeds (``<volume>.cidata.iso``, raw) and container-disk
      overlays (``<volume>.overlay.qcow2``, over the base image ``image(reference)``);
    * ``hostDisk``: the path as given (raw), which admission and the preparer confine;
    * kernel boot: ``<root>/images/<image>/<kernelPath>`` (``/vmlinuz`` unless given) and ``initrdPath``.
    """

    root: Path

    @property
    def images(self) -> Path:
        """Container-disk and kernel-boot images, one directory or file per image reference."""
        return self.root / "images"

    def claim(self, namespace: str, claim: str) -> Path:
        """A PVC or DataVolume's image."""
        return self.root / "volumes" / namespace / "claims" / f"{claim}.qcow2"

    def vmi_dir(self, namespace: str, name: str) -> Path:
        """Files that live and die with one VMI."""
        return self.root / "volumes" / namespace / "vmis" / name

    def image(self, reference: str) -> Path:
        """The local copy of a container image reference (``quay.io/x/y:tag`` -> ``quay.io_x_y_tag``)."""
        return self.images / _UNSAFE.sub("_", reference.replace("/", "_").replace(":", "_"))

    def resolve(self, vmi: VirtualMachineInstance, volume: Volume) -> VolumeFile:
        """See ``VolumeResolver.resolve``."""
        namespace = vmi.metadata.namespace or "default"
        here = self.vmi_dir(namespace, vmi.metadata.name or "")
        if (pvc := volume.persistent_volume_claim) is not None:
            return VolumeFile(str(self.claim(namespace, pvc.claim_name)), readonly=bool(pvc.read_only))
        if (dv := volume.data_volume) is not None:
            return VolumeFile(str(self.claim(namespace, dv.name)))
        if volume.empty_disk is not None:
            return VolumeFile(str(here / f"{volume.name}.qcow2"))
        if volume.container_disk is not None:
            return VolumeFile(str(here / f"{volume.name}.overlay.qcow2"))
        if volume.cloud_init_no_cloud is not None:
            return VolumeFile(str(here / f"{volume.name}.cidata.iso"), format="raw", readonly=True)
        if (host := volume.host_disk) is not None:
            return VolumeFile(host.path, format="raw")
        sources = ", ".join(volume.sources) or "none"
        raise VolumeError(
            f"spec.volumes[name={volume.name}]: no source this host supports (source: {sources})"
        )

    def kernel_boot(self, vmi: VirtualMachineInstance, boot: domain.KernelBoot) -> KernelBoot:
        """See ``VolumeResolver.kernel_boot``."""
        if boot.container is None:
            raise VolumeError("spec.domain.firmware.kernelBoot.container: required for kernel boot")
        root = self.image(boot.container.image)
        kernel = (boot.container.kernel_path or "/vmlinuz").lstrip("/")
        initrd = boot.container.initrd_path
        return KernelBoot(
            kernel=str(root / kernel),
            initrd=str(root / initrd.lstrip("/")) if initrd else None,
            cmdline=boot.kernel_args or "",
        )


#: The brief's name for the directory resolver; ``HostPaths`` is the one the agent's modules use.
DirectoryVolumeResolver = HostPaths


def _disk_spec(
    vmi: VirtualMachineInstance, disk: domain.Disk, volume: Volume, resolver: VolumeResolver
) -> DiskSpec:
    where = f"spec.domain.devices.disks[name={disk.name}]"
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
    ceiling = max_guest.bytes() if max_guest is not None and max_guest > guest else None
    return guest.bytes(), ceiling


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
    dom = vmi.spec.domain
    cpu = dom.cpu or domain.CPU()
    sockets = cpu.sockets or 1
    if cpu.max_sockets and cpu.max_sockets < sockets:
        raise MachineSpecError(f"spec.domain.cpu.maxSockets: {cpu.max_sockets} is below sockets {sockets}")
    memory_bytes, max_memory_bytes = _memory(vmi)
    volumes = {v.name: v for v in vmi.spec.volumes or ()}
    disks = []
    for disk in dom.devices.disks or ():
        volume = volumes.get(disk.name)
        if volume is None:
            raise MachineSpecError(f"spec.domain.devices.disks[name={disk.name}]: no volume of that name")
        disks.append(_disk_spec(vmi, disk, volume, resolver))
    uid = meta.uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmplane:{namespace}/{name}"))
    firmware = dom.firmware
    kernel = firmware.kernel_boot if firmware is not None else None
    return MachineSpec(
        name=machine_name(namespace, name),
        uuid=(firmware.uuid if firmware is not None else None) or uid,
        sockets=sockets,
        cores=cpu.cores or 1,
        threads=cpu.threads or 1,
        max_sockets=cpu.max_sockets or 0,
        memory_bytes=memory_bytes,
        max_memory_bytes=max_memory_bytes,
        machine=(dom.machine.type if dom.machine is not None else None) or "q35",
        cpu_model=None if cpu.model in _HOST_CPU_MODELS else cpu.model,
        disks=tuple(disks),
        nics=_nic_specs(vmi, uid),
        kernel_boot=resolver.kernel_boot(vmi, kernel) if kernel is not None else None,
    )
