"""From a VMI to a ``MachineSpec``: pure translation, plus where each volume lives on this host.

Volumes map to files under the agent's data directory: claims (PVC, DataVolume) are qcow2 images
per namespace and outlive VMIs; ``emptyDisk``, cloud-init seeds and container-disk overlays belong
to the VMI; ``hostDisk`` is the path given (admission confines it). Creating the files is the
preparation step's job (``agent.volumes``), not this module's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmplane.agent.hypervisor import DiskSpec, KernelBoot, MachineSpec, NicSpec
from vmplane.api.domain import Disk, Interface
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import Volume

__all__ = ["HostPaths", "VolumeError", "interface_mac", "machine_name", "machine_spec", "vmi_key_of"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class VolumeError(ValueError):
    """A volume this host cannot provide."""


def machine_name(namespace: str, name: str) -> str:
    """The hypervisor's name for a VMI: ``namespace_name`` (``_`` never occurs in either)."""
    return f"{namespace}_{name}"


def vmi_key_of(machine: str) -> tuple[str, str]:
    """The VMI key a machine name stands for."""
    namespace, _, name = machine.partition("_")
    return namespace, name


def interface_mac(vmi_uid: str, interface: Interface) -> str:
    """The interface's MAC, or a stable locally administered one derived from the VMI and its name."""
    if interface.mac_address:
        return interface.mac_address.replace("-", ":").lower()
    digest = hashlib.sha256(f"{vmi_uid}/{interface.name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where this host keeps disk images: ``volumes/`` for data, ``images/`` for container disks."""

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
        """The local copy of a container image reference (``quay.io/x/y:tag`` → ``quay.io_x_y_tag``)."""
        return self.images / _UNSAFE.sub("_", reference.replace("/", "_").replace(":", "_"))


def _source_path(
    paths: HostPaths, namespace: str, name: str, volume: Volume
) -> tuple[str, Literal["qcow2", "raw"]]:
    vmi_dir = paths.vmi_dir(namespace, name)
    if volume.persistent_volume_claim is not None:
        return str(paths.claim(namespace, volume.persistent_volume_claim.claim_name)), "qcow2"
    if volume.data_volume is not None:
        return str(paths.claim(namespace, volume.data_volume.name)), "qcow2"
    if volume.empty_disk is not None:
        return str(vmi_dir / f"{volume.name}.qcow2"), "qcow2"
    if volume.container_disk is not None:
        return str(vmi_dir / f"{volume.name}.overlay.qcow2"), "qcow2"
    if volume.host_disk is not None:
        return volume.host_disk.path, "raw"
    if volume.cloud_init_no_cloud is not None:
        return str(vmi_dir / f"{volume.name}.cidata.iso"), "raw"
    raise VolumeError(f"volume {volume.name} has no source this host supports")


def _disk(paths: HostPaths, namespace: str, name: str, disk: Disk, volume: Volume) -> DiskSpec:
    target = disk.cdrom or disk.lun or disk.disk
    cdrom = disk.cdrom is not None
    bus = target.bus if target is not None else None
    path, fmt = _source_path(paths, namespace, name, volume)
    return DiskSpec(
        name=disk.name,
        path=path,
        format=fmt,
        bus=bus if bus in ("virtio", "sata", "scsi") else ("sata" if cdrom else "virtio"),  # type: ignore[arg-type]
        cdrom=cdrom,
        readonly=bool(target is not None and target.readonly) or cdrom,
        serial=disk.serial,
        hotpluggable=volume.hotpluggable,
    )


def machine_spec(vmi: VirtualMachineInstance, *, paths: HostPaths) -> MachineSpec:
    """The machine a VMI describes, with the hotplug headroom of its spec."""
    meta, spec = vmi.metadata, vmi.spec
    namespace, name = meta.namespace or "default", meta.name or ""
    domain = spec.domain
    cpu = domain.cpu
    sockets = (cpu.sockets if cpu else None) or 1
    memory = domain.memory
    guest = memory.guest.bytes() if memory is not None and memory.guest is not None else 128 * 1024**2
    max_guest = memory.max_guest.bytes() if memory is not None and memory.max_guest is not None else None
    volumes = {v.name: v for v in spec.volumes or ()}
    disks = tuple(
        _disk(paths, namespace, name, d, volumes[d.name])
        for d in domain.devices.disks or ()
        if d.name in volumes
    )
    nics = tuple(
        NicSpec(
            name=i.name,
            mac=interface_mac(meta.uid or name, i),
            model=i.model or "virtio",
            link_up=i.state != "down",
        )
        for i in domain.devices.interfaces or ()
        if i.state != "absent"
    )
    kernel_boot = None
    boot = domain.firmware.kernel_boot if domain.firmware is not None else None
    if boot is not None and boot.container is not None:
        image = paths.image(boot.container.image)
        kernel_path = (boot.container.kernel_path or "/vmlinuz").lstrip("/")
        initrd = boot.container.initrd_path
        kernel_boot = KernelBoot(
            kernel=str(image / kernel_path),
            initrd=str(image / initrd.lstrip("/")) if initrd else None,
            cmdline=boot.kernel_args or "",
        )
    firmware_uuid = domain.firmware.uuid if domain.firmware is not None else None
    return MachineSpec(
        name=machine_name(namespace, name),
        uuid=firmware_uuid or meta.uid or "",
        sockets=sockets,
        cores=(cpu.cores if cpu else None) or 1,
        threads=(cpu.threads if cpu else None) or 1,
        max_sockets=max((cpu.max_sockets if cpu else None) or sockets, sockets),
        memory_bytes=guest,
        max_memory_bytes=max_guest,
        machine="q35",
        cpu_model=cpu.model if cpu is not None else None,
        disks=disks,
        nics=nics,
        kernel_boot=kernel_boot,
    )
