"""``QemuVolumePreparer``: creates the files ``paths.HostPaths`` says a VMI's disks live in.

What each volume source becomes (the paths are ``agent.machine``'s):

* ``persistentVolumeClaim`` / ``dataVolume``: ``<data>/volumes/<ns>/claims/<claim>.qcow2``, created on
  first use and kept when VMIs come and go (a claim outlives its users). Its size is the annotation
  ``claims.vmplane.io/<claim-name>`` on the VMI (set it in the VM template's metadata, e.g. ``10Gi``)
  or ``default_claim_size`` (1Gi). qcow2 is sparse: an unused gigabyte costs nothing.
* ``emptyDisk``: a qcow2 of ``capacity`` in the VMI directory.
* ``containerDisk``: a qcow2 overlay in the VMI directory whose backing file is the image from the
  local image directory (``host.images``); QEMU opens backing files read-only, so the base is never
  written and many VMIs share it.
* ``cloudInitNoCloud``: a NoCloud seed ISO in the VMI directory (``host.cidata``).
* ``hostDisk``: the path itself, which must lie under ``allowed_host_dirs`` (admission refuses others;
  this checks again after resolving symlinks). ``Disk`` must exist; ``DiskOrCreate`` creates a sparse raw
  file of ``capacity`` when it is missing.
* ``firmware.kernelBoot``: nothing is created; the kernel and initrd must be in the image directory.

Every other path comes from ``HostPaths``, which refuses names that are not Kubernetes names and
confines each path (symlinks resolved) to its tree, so nothing is created outside
``<data>/volumes/<ns>/{claims,vmis/<name>}`` and the allowed host-disk directories.

The VMI directory (``<data>/volumes/<ns>/vmis/<name>``) is keyed by name, so it records the uid of the
VMI that owns it: files left by an earlier VMI of the same name are discarded, never reused, and a late
``release`` of an old VMI cannot remove a newer one's files. ``prepare`` is idempotent (it runs again
for every hot-plugged disk) and creates each file under a temporary name first, so a crash never leaves
a half-written image where a disk is expected.

qcow2 images are made by ``qemu-img`` (QEMU's own tool for its format), run as an asyncio subprocess.

Ownership (``hypervisor.guestfs``): directories are created 0711 and stay the agent's; every image, overlay
and seed is handed to QEMU's user (0600) before it is linked into place, so QEMU can open it by path,
at boot or when it is hot-plugged, and nobody else can read it (seeds hold the cloud-init userData).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from vmplane.api.quantity import Quantity, QuantityError
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import HostDisk, Volume
from vmplane.host.cidata import SeedError, nocloud_data, seed_image
from vmplane.host.images import check_kernel_boot, container_disk_image
from vmplane.host.paths import HostPaths, VolumeError
from vmplane.hypervisor.base import DiskSpec, MachineSpec
from vmplane.hypervisor.guestfs import GuestUser, hand_over, make_dirs

__all__ = ["CLAIM_SIZE_ANNOTATION_PREFIX", "DEFAULT_CLAIM_SIZE", "QemuVolumePreparer", "is_confined"]

CLAIM_SIZE_ANNOTATION_PREFIX = "claims.vmplane.io/"
DEFAULT_CLAIM_SIZE = 1 << 30
_OWNER_FILE = ".owner-uid"


def is_confined(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (symlinks resolved) lies strictly under one of ``roots`` (resolved too)."""
    real = Path(os.path.realpath(path))
    return any(
        real.is_relative_to(Path(os.path.realpath(root))) and real != Path(os.path.realpath(root))
        for root in roots
    )


class QemuVolumePreparer:
    """Implements ``agent.agent.VolumePreparer`` for QEMU: qcow2 images, overlays, seeds, host disks."""

    def __init__(
        self,
        *,
        paths: HostPaths,
        allowed_host_dirs: Sequence[Path],
        default_claim_size: int = DEFAULT_CLAIM_SIZE,
        qemu_img: str = "qemu-img",
        user: GuestUser | None = None,
    ) -> None:
        """``user``: who QEMU runs as, given every file made here (None: files stay the agent's)."""
        self._paths = paths
        self._user = user
        self._allowed = tuple(allowed_host_dirs)
        self._claim_size = default_claim_size
        self._qemu_img = qemu_img

    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None:
        """Make every disk of ``spec`` exist (creating only what is missing) and check kernel boot."""
        namespace, name = vmi.metadata.namespace or "default", vmi.metadata.name or ""
        self._own_vmi_dir(self._paths.vmi_dir(namespace, name), vmi.metadata.uid or "")
        volumes = {v.name: v for v in vmi.spec.volumes or ()}
        for disk in spec.disks:
            if disk.empty:
                continue  # an empty CD-ROM drive: nothing on the host until media is inserted
            volume = volumes.get(disk.name)
            if volume is None:
                raise VolumeError(f"disk {disk.name} has no volume")
            await self._prepare_disk(vmi, volume, disk)
        firmware = vmi.spec.domain.firmware
        boot = firmware.kernel_boot if firmware is not None else None
        if boot is not None and boot.container is not None:
            check_kernel_boot(self._paths, boot.container)

    async def release(self, vmi: VirtualMachineInstance) -> None:
        """Remove the VMI directory, unless a newer VMI of the same name owns it by now.

        A VMI whose namespace or name cannot name a VMI directory never had one: nothing to remove.
        """
        try:
            vmi_dir = self._paths.vmi_dir(vmi.metadata.namespace or "default", vmi.metadata.name or "")
        except VolumeError:
            return
        owner = _read_owner(vmi_dir)
        if owner is None or owner == (vmi.metadata.uid or ""):
            shutil.rmtree(vmi_dir, ignore_errors=True)

    # -- per source ------------------------------------------------------------------------------

    async def _prepare_disk(self, vmi: VirtualMachineInstance, volume: Volume, disk: DiskSpec) -> None:
        path = Path(disk.path)
        if volume.host_disk is not None:
            await self._host_disk(volume.name, volume.host_disk, path)
            return
        if path.exists():
            return
        if volume.persistent_volume_claim is not None or volume.data_volume is not None:
            await _create_once(path, self._qcow2(self._claim_bytes(vmi, path.stem)), self._user)
        elif volume.empty_disk is not None:
            await _create_once(path, self._qcow2(volume.empty_disk.capacity.bytes()), self._user)
        elif volume.container_disk is not None:
            base = container_disk_image(self._paths, volume.container_disk)
            await _create_once(path, self._overlay(base), self._user)
        elif volume.cloud_init_no_cloud is not None:
            try:
                data = nocloud_data(
                    volume.cloud_init_no_cloud,
                    instance_id=vmi.metadata.uid or vmi.metadata.name or "",
                    hostname=vmi.spec.hostname or vmi.metadata.name or "",
                )
            except SeedError as err:
                raise VolumeError(f"volume {volume.name}: {err}") from err
            image = await asyncio.to_thread(seed_image, data)
            await _create_once(path, _write_bytes(image), self._user)
        else:
            raise VolumeError(f"volume {volume.name} has no source this host supports")

    async def _host_disk(self, volume: str, source: HostDisk, path: Path) -> None:
        if not path.is_absolute() or not is_confined(path, self._allowed):
            allowed = ", ".join(str(d) for d in self._allowed) or "none configured"
            raise VolumeError(
                f"volume {volume}: hostDisk path {path} is outside the allowed directories ({allowed})"
            )
        if path.exists():
            if not path.is_file() and not path.is_block_device():
                raise VolumeError(f"volume {volume}: hostDisk path {path} is not a file")
            return
        if source.type == "Disk":
            raise VolumeError(f"volume {volume}: hostDisk {path} does not exist (type Disk)")
        if source.capacity is None:
            raise VolumeError(f"volume {volume}: hostDisk DiskOrCreate needs a capacity")
        capacity = source.capacity.bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        await _create_once(path, _sparse(capacity), self._user)

    def _claim_bytes(self, vmi: VirtualMachineInstance, claim: str) -> int:
        text = (vmi.metadata.annotations or {}).get(CLAIM_SIZE_ANNOTATION_PREFIX + claim)
        if text is None:
            return self._claim_size
        try:
            size = Quantity.parse(text).bytes()
        except QuantityError as err:
            raise VolumeError(f"annotation {CLAIM_SIZE_ANNOTATION_PREFIX}{claim}: {err}") from err
        if size <= 0:
            raise VolumeError(f"annotation {CLAIM_SIZE_ANNOTATION_PREFIX}{claim}: size must be positive")
        return size

    # -- file makers (each writes a temporary path handed to it) -----------------------------------

    def _qcow2(self, size: int) -> Callable[[Path], Awaitable[None]]:
        async def make(tmp: Path) -> None:
            await self._run("create", "-q", "-f", "qcow2", str(tmp), str(size))

        return make

    def _overlay(self, base: Path) -> Callable[[Path], Awaitable[None]]:
        async def make(tmp: Path) -> None:
            info = json.loads(await self._run("info", "--output=json", "-U", str(base)))
            fmt = str(info.get("format", "raw"))
            backing = str(base.absolute())
            await self._run("create", "-q", "-f", "qcow2", "-F", fmt, "-b", backing, str(tmp))

        return make

    async def _run(self, *args: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                self._qemu_img,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            raise VolumeError(f"cannot run {self._qemu_img}: {err}") from err
        out, stderr = await process.communicate()
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip() or f"exit status {process.returncode}"
            raise VolumeError(f"{self._qemu_img} {args[0]}: {detail}")
        return out.decode(errors="replace")

    def _own_vmi_dir(self, vmi_dir: Path, uid: str) -> None:
        owner = _read_owner(vmi_dir)
        if owner == uid:
            return
        if owner is not None or vmi_dir.exists():
            shutil.rmtree(vmi_dir)  # an earlier VMI's leftovers: never hand them to a new guest
        make_dirs(vmi_dir)
        (vmi_dir / _OWNER_FILE).write_text(uid)


def _read_owner(vmi_dir: Path) -> str | None:
    try:
        return (vmi_dir / _OWNER_FILE).read_text()
    except FileNotFoundError:
        return None


def _write_bytes(content: bytes) -> Callable[[Path], Awaitable[None]]:
    async def make(tmp: Path) -> None:
        tmp.write_bytes(content)

    return make


def _sparse(size: int) -> Callable[[Path], Awaitable[None]]:
    async def make(tmp: Path) -> None:
        with tmp.open("r+b") as file:
            file.truncate(size)

    return make


async def _create_once(path: Path, make: Callable[[Path], Awaitable[None]], user: GuestUser | None) -> None:
    """Build ``path`` under a temporary name, then link it into place unless someone was faster.

    ``os.link`` fails on an existing name, so two VMIs creating the same claim never replace an image
    the other may already be using. The file is ``user``'s (0600) before it gets its name.
    """
    make_dirs(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        await make(tmp)
        if user is not None:
            hand_over(tmp, user)
        else:
            os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
