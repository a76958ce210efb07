"""Where a VMI's files live on this host, confined to their trees: claims, per-VMI files, images.

Every value that becomes a file name is checked again with admission's rules (``api.names``): a VMI
may reach the agent without admission (written straight into the store). ``HostPaths`` also confines
each path it returns after resolving symlinks (the only I/O here: it reads links, never creates or
opens a file), so a link planted in the data directory cannot point a disk at another namespace's
claim or outside the volume and image trees.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from vmplane.api import domain, names
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import Volume
from vmplane.hypervisor.base import KernelBoot

__all__ = [
    "DirectoryVolumeResolver",
    "HostPaths",
    "MachineSpecError",
    "VolumeError",
    "VolumeFile",
    "VolumeResolver",
    "check_inner_path",
    "check_label",
    "check_subdomain",
    "confined",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class MachineSpecError(ValueError):
    """A VMI this agent cannot turn into a machine; the message names the offending field."""


class VolumeError(MachineSpecError):
    """A volume this host cannot provide."""


def check_label(field: str, value: str, error: type[MachineSpecError] = VolumeError) -> None:
    errors = names.dns1123_label_errors(value)
    if errors:
        raise error(f"{field}: invalid value {value!r}: {', '.join(errors)}")


def check_subdomain(field: str, value: str, error: type[MachineSpecError] = VolumeError) -> None:
    errors = names.dns1123_subdomain_errors(value)
    if errors:
        raise error(f"{field}: invalid value {value!r}: {', '.join(errors)}")


def check_inner_path(field: str, path: str) -> None:
    errors = names.inner_path_errors(field, path)
    if errors:
        raise VolumeError(f"{errors[0]} (got {path!r})")


def _is_under(path: Path, root: Path) -> bool:
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real != real_root and real.is_relative_to(real_root)


def confined(path: Path, root: Path, field: str) -> Path:
    """``path`` if it lies strictly under ``root`` once symlinks are resolved, else VolumeError."""
    if not _is_under(path, root):
        raise VolumeError(f"{field}: {path} resolves to {os.path.realpath(path)}, outside {root}")
    return path


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

    ``host_disk_dirs``: where ``hostDisk`` paths may lie (None: left to the preparer, which checks too).
    ``shared_volumes``: a volume directory every node mounts (NFS or the like; ``--shared-volumes-dir``)
    where claims live instead, as ``<shared_volumes>/<ns>/claims/<claim>.qcow2``, so that a guest can
    move between nodes without copying them.
    """

    root: Path
    host_disk_dirs: tuple[Path, ...] | None = None
    shared_volumes: Path | None = None

    @property
    def images(self) -> Path:
        """Container-disk and kernel-boot images, one directory or file per image reference."""
        return self.root / "images"

    def claims_dir(self, namespace: str) -> Path:
        """Where a namespace's PVC and DataVolume images live."""
        check_label("metadata.namespace", namespace)
        return (self.shared_volumes or self.root / "volumes") / namespace / "claims"

    def claim(self, namespace: str, claim: str, *, field: str = "claimName") -> Path:
        """A PVC or DataVolume's image; ``claim`` must be a DNS-1123 subdomain (a Kubernetes name)."""
        check_subdomain(field, claim)
        folder = self.claims_dir(namespace)
        return confined(folder / f"{claim}.qcow2", folder, field)

    def vmi_dir(self, namespace: str, name: str) -> Path:
        """Files that live and die with one VMI."""
        check_label("metadata.namespace", namespace)
        check_subdomain("metadata.name", name)
        volumes = self.root / "volumes"
        return confined(volumes / namespace / "vmis" / name, volumes, "metadata.name")

    def image(self, reference: str, *, field: str = "image") -> Path:
        """The local copy of a container image reference (``quay.io/x/y:tag`` -> ``quay.io_x_y_tag``)."""
        errors = names.image_reference_errors(reference)
        if errors:
            raise VolumeError(f"{field}: invalid value {reference!r}: {', '.join(errors)}")
        entry = self.images / _UNSAFE.sub("_", reference.replace("/", "_").replace(":", "_"))
        return confined(entry, self.images, field)

    def _vmi_file(self, vmi: VirtualMachineInstance, volume: Volume, suffix: str) -> str:
        namespace = vmi.metadata.namespace or "default"
        here = self.vmi_dir(namespace, vmi.metadata.name or "")
        field = f"spec.volumes[name={volume.name}].name"
        check_label(field, volume.name)
        return str(confined(here / f"{volume.name}{suffix}", here, field))

    def resolve(self, vmi: VirtualMachineInstance, volume: Volume) -> VolumeFile:
        """See ``VolumeResolver.resolve``."""
        namespace = vmi.metadata.namespace or "default"
        where = f"spec.volumes[name={volume.name}]"
        if (pvc := volume.persistent_volume_claim) is not None:
            path = self.claim(namespace, pvc.claim_name, field=f"{where}.persistentVolumeClaim.claimName")
            return VolumeFile(str(path), readonly=bool(pvc.read_only))
        if (dv := volume.data_volume) is not None:
            return VolumeFile(str(self.claim(namespace, dv.name, field=f"{where}.dataVolume.name")))
        if volume.empty_disk is not None:
            return VolumeFile(self._vmi_file(vmi, volume, ".qcow2"))
        if volume.container_disk is not None:
            self.image(volume.container_disk.image, field=f"{where}.containerDisk.image")
            if volume.container_disk.path:
                check_inner_path(f"{where}.containerDisk.path", volume.container_disk.path)
            return VolumeFile(self._vmi_file(vmi, volume, ".overlay.qcow2"))
        if volume.cloud_init_no_cloud is not None:
            return VolumeFile(self._vmi_file(vmi, volume, ".cidata.iso"), format="raw", readonly=True)
        if (host := volume.host_disk) is not None:
            field = f"{where}.hostDisk.path"
            if "\x00" in host.path or not host.path.startswith("/") or ".." in host.path.split("/"):
                raise VolumeError(f"{field}: {host.path!r} is not an absolute path without '..'")
            # The preparer confines it again (symlinks resolved) before it creates or opens it.
            if self.host_disk_dirs is not None and not any(
                _is_under(Path(host.path), d) for d in self.host_disk_dirs
            ):
                shown = ", ".join(str(d) for d in self.host_disk_dirs) or "none configured"
                raise VolumeError(f"{field}: {host.path} is outside the allowed directories ({shown})")
            return VolumeFile(host.path, format="raw")
        sources = ", ".join(volume.sources) or "none"
        raise VolumeError(f"{where}: no source this host supports (source: {sources})")

    def kernel_boot(self, vmi: VirtualMachineInstance, boot: domain.KernelBoot) -> KernelBoot:
        """See ``VolumeResolver.kernel_boot``."""
        where = "spec.domain.firmware.kernelBoot"
        if boot.container is None:
            raise VolumeError(f"{where}.container: required for kernel boot")
        root = self.image(boot.container.image, field=f"{where}.container.image")
        kernel = boot.container.kernel_path or "/vmlinuz"
        check_inner_path(f"{where}.container.kernelPath", kernel)
        initrd = boot.container.initrd_path
        if initrd:
            check_inner_path(f"{where}.container.initrdPath", initrd)
        if boot.kernel_args is not None and "\x00" in boot.kernel_args:
            raise VolumeError(f"{where}.kernelArgs must not contain a NUL character")
        return KernelBoot(
            kernel=str(confined(root / kernel.lstrip("/"), root, f"{where}.container.kernelPath")),
            initrd=str(confined(root / initrd.lstrip("/"), root, f"{where}.container.initrdPath"))
            if initrd
            else None,
            cmdline=boot.kernel_args or "",
        )


#: The brief's name for the directory resolver; ``HostPaths`` is the one the agent's modules use.
DirectoryVolumeResolver = HostPaths
