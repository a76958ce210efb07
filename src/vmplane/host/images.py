"""The local image directory: where container disks and kernel-boot images come from.

vmplane pulls nothing from a registry. An image reference resolves to ``<data-dir>/images/<name>``,
where ``<name>`` is the reference with ``/`` and ``:`` (and anything outside ``[A-Za-z0-9._-]``)
replaced by ``_`` (``HostPaths.image``): ``quay.io/containerdisks/fedora:40`` is
``images/quay.io_containerdisks_fedora_40``. The entry is either

* a disk image file (qcow2 or raw), used as a ``containerDisk`` as is; or
* a directory laid out like a KubeVirt container disk: the disk image under ``disk/`` (or at the top),
  one of ``*.qcow2``, ``*.img``, ``*.raw``, ``*.iso``; ``containerDisk.path`` picks one file when there
  are several. A ``firmware.kernelBoot.container`` image is a directory holding the kernel and initrd
  at ``kernelPath`` and ``initrdPath`` (``/vmlinuz`` and none by default).

Installing an image is a copy: ``mkdir -p <data-dir>/images/<name> && cp disk.qcow2 <that>/disk/``.
Paths inside an image never leave it: admission holds them to KubeVirt's ``ValidatePath`` (absolute,
no relative components) and this module checks again, after resolving symlinks, that the file it
hands out lies inside the image entry, and the entry inside the image directory.
"""

from __future__ import annotations

from pathlib import Path

from vmplane.api.domain import KernelBootContainer
from vmplane.api.names import inner_path_errors
from vmplane.api.volumes import ContainerDisk
from vmplane.host.paths import HostPaths, VolumeError, confined

__all__ = ["DISK_SUFFIXES", "check_kernel_boot", "container_disk_image"]

DISK_SUFFIXES = (".qcow2", ".img", ".raw", ".iso")


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` for a path given inside an image, refusing one that would leave it."""
    errors = inner_path_errors(what, relative)
    if errors:
        raise VolumeError(f"{errors[0]} (got {relative!r})")
    return confined(root / relative.lstrip("/"), root, what)


def _entry(paths: HostPaths, reference: str) -> Path:
    entry = paths.image(reference)  # a checked reference, one entry right under the image directory
    if entry.parent != paths.images:
        raise VolumeError(f"image reference {reference!r} does not name an entry of {paths.images}")
    if not entry.exists():
        raise VolumeError(
            f"image {reference!r} is not in the local image directory: expected {entry} "
            "(a disk image file, or a directory holding one under disk/)"
        )
    return entry


def container_disk_image(paths: HostPaths, disk: ContainerDisk) -> Path:
    """The disk image file a ``containerDisk`` names (never written: VMIs use an overlay on it)."""
    entry = _entry(paths, disk.image)
    if entry.is_file():
        return confined(entry, paths.images, f"containerDisk {disk.image!r}")
    if disk.path:
        chosen = _inside(entry, disk.path, f"containerDisk {disk.image!r}: path")
        if not chosen.is_file():
            raise VolumeError(f"containerDisk {disk.image!r}: {chosen} is not a file")
        return chosen
    for folder in (entry / "disk", entry):
        candidates = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in DISK_SUFFIXES)
        if len(candidates) == 1:
            return confined(candidates[0], entry, f"containerDisk {disk.image!r}")
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise VolumeError(
                f"containerDisk {disk.image!r}: several disk images in {folder} ({names}); set path"
            )
    raise VolumeError(
        f"containerDisk {disk.image!r}: no disk image ({', '.join(DISK_SUFFIXES)}) in {entry}/disk or {entry}"
    )


def check_kernel_boot(paths: HostPaths, container: KernelBootContainer) -> None:
    """Refuse a kernel-boot image whose kernel or initrd is missing, naming the file expected."""
    entry = _entry(paths, container.image)
    for what, relative in (
        ("kernelPath", container.kernel_path or "/vmlinuz"),
        ("initrdPath", container.initrd_path),
    ):
        if relative is None:
            continue
        path = _inside(entry, relative, f"kernelBoot {container.image!r}: {what}")
        if not path.is_file():
            raise VolumeError(f"kernelBoot {container.image!r}: {what} {relative!r}: {path} is not a file")
