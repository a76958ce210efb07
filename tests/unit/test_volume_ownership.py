"""QemuVolumePreparer hands every file it makes to QEMU's user (``hypervisor.guestfs``), real qemu-img."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from vmplane.agent.machine import machine_spec
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.host.paths import HostPaths
from vmplane.host.volumes import QemuVolumePreparer
from vmplane.hypervisor.guestfs import GuestUser

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")

VOLUMES = [
    {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
    {"name": "empty", "emptyDisk": {"capacity": "16Mi"}},
    {"name": "seed", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: secret\n"}},
]


def qemu_user() -> GuestUser:
    """As root a stranger's uid (chown needs no passwd entry); otherwise ourselves, unswitched."""
    if os.geteuid() == 0:
        return GuestUser(name="stranger", uid=4242, gid=4343, switch=True)
    return GuestUser(name="me", uid=os.geteuid(), gid=os.getegid(), switch=False)


def vmi() -> VirtualMachineInstance:
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "vm1", "namespace": "ns", "uid": "uid-1"},
            "spec": {
                "domain": {
                    "memory": {"guest": "128Mi"},
                    "devices": {"disks": [{"name": v["name"], "disk": {"bus": "virtio"}} for v in VOLUMES]},
                },
                "volumes": VOLUMES,
            },
        }
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_every_disk_file_is_qemus_user_s_and_owner_only(tmp_path: Path) -> None:
    user, paths = qemu_user(), HostPaths(tmp_path / "guests")
    preparer = QemuVolumePreparer(paths=paths, allowed_host_dirs=[paths.root / "hostdisks"], user=user)
    machine = vmi()
    spec = machine_spec(machine, resolver=paths)
    await preparer.prepare(machine, spec)
    for disk in spec.disks:
        path = Path(disk.path)
        assert (path.stat().st_uid, path.stat().st_gid, mode(path)) == (user.uid, user.gid, 0o600), disk.name


async def test_directories_on_qemus_path_stay_the_agents_and_are_searchable_not_listable(
    tmp_path: Path,
) -> None:
    paths = HostPaths(tmp_path / "guests")
    preparer = QemuVolumePreparer(paths=paths, allowed_host_dirs=[], user=qemu_user())
    machine = vmi()
    await preparer.prepare(machine, machine_spec(machine, resolver=paths))
    for directory in (paths.vmi_dir("ns", "vm1"), paths.claim("ns", "data").parent, paths.root / "volumes"):
        assert (directory.stat().st_uid, mode(directory)) == (os.geteuid(), 0o711), directory
