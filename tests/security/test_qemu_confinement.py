"""Issue 8, QEMU confined and files private: real QEMU (TCG, the test guest) and ``vmplane serve``.

A guest is booted by ``QemuHypervisor`` in a guest directory laid out as ``vmplane serve`` lays it
out, with a claim the real ``QemuVolumePreparer`` made: its QEMU runs as ``vmplane-qemu`` (the invoking
user when not root) under seccomp, and still hot-plugs a vCPU and that disk, which QEMU opens by path
as its own user. ``test_private_files.py`` checks the files of ``vmplane serve``. Every wait has a
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from qemu_user_support import qemu_user

from plane_support import GUEST, reachable_dir, reachable_guest  # isort: skip
from vmplane.agent.machine import machine_spec
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.host.paths import HostPaths
from vmplane.host.volumes import QemuVolumePreparer
from vmplane.hypervisor.base import HypervisorError, KernelBoot, MachineSpec
from vmplane.hypervisor.guestfs import GuestUser, prepare_guest_dir
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.hypervisor.qemu.argv import SANDBOX
from vmplane.hypervisor.qemu.naming import run_files

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.asyncio(loop_scope="module")]

MiB = 1 << 20
BOOT_DEADLINE = 90.0
GUEST_DEADLINE = 20.0
NAME = "confined"


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@dataclass
class Confined:
    user: GuestUser
    guest_dir: Path
    paths: HostPaths
    preparer: QemuVolumePreparer
    hv: QemuHypervisor

    @property
    def pid(self) -> int:
        return int(run_files(self.hv.run_dir(NAME))["pidfile"].read_text())

    async def console(self, predicate: Callable[[dict[str, str]], bool], timeout: float) -> None:
        log = run_files(self.hv.run_dir(NAME))["console"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            for line in text.splitlines():
                if line.startswith("VMPLANE-STATUS "):
                    status = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
                    with contextlib.suppress(KeyError, ValueError):
                        if predicate(status):
                            return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching guest status line within {timeout}s")


def claim_vmi() -> VirtualMachineInstance:
    """A VMI with one hotpluggable PVC disk, for the preparer to make and QEMU to open."""
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {
                "domain": {
                    "memory": {"guest": "256Mi"},
                    "devices": {"disks": [{"name": "data", "disk": {"bus": "virtio"}}]},
                },
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}],
            },
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def confined() -> AsyncIterator[Confined]:
    user = qemu_user()
    guest_dir = reachable_dir("vmplane-confined-")
    prepare_guest_dir(guest_dir, user)
    paths = HostPaths(guest_dir)
    preparer = QemuVolumePreparer(paths=paths, allowed_host_dirs=[guest_dir / "hostdisks"], user=user)
    hv = QemuHypervisor(base_dir=guest_dir / "machines", accel="tcg", on_change=lambda _: None, user=user)
    cmdline = (GUEST / "cmdline").read_text().strip()
    spec = MachineSpec(
        name=NAME,
        uuid=str(uuid.uuid4()),
        sockets=1,
        max_sockets=2,
        memory_bytes=256 * MiB,
        kernel_boot=KernelBoot(*(str(f) for f in reachable_guest()), cmdline),
        spare_root_ports=2,
    )
    env = Confined(user, guest_dir, paths, preparer, hv)
    try:
        await hv.start(spec)
        await env.console(lambda s: True, BOOT_DEADLINE)
        yield env
    finally:
        with contextlib.suppress(HypervisorError):
            await hv.stop(NAME, grace_period=0)
        await hv.close()
        with contextlib.suppress(OSError, ValueError):
            os.kill(env.pid, 9)
        shutil.rmtree(guest_dir, ignore_errors=True)


async def test_qemu_runs_as_the_unprivileged_qemu_user(confined: Confined) -> None:
    uids = proc_status(confined.pid)["Uid"].split()
    gids = proc_status(confined.pid)["Gid"].split()
    assert confined.user.uid != 0
    assert uids == [str(confined.user.uid)] * 4  # real, effective, saved, filesystem
    assert gids == [str(confined.user.gid)] * 4
    assert proc_status(confined.pid)["Groups"] == ""


async def test_as_root_that_user_is_vmplane_qemu(confined: Confined) -> None:
    if os.geteuid() != 0:
        assert not confined.user.switch  # not root: the invoking user, nobody to switch to
        return
    assert confined.user.name == "vmplane-qemu"
    assert confined.user.switch


async def test_qemu_is_under_its_seccomp_sandbox(confined: Confined) -> None:
    assert proc_status(confined.pid)["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    argv = Path(f"/proc/{confined.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-sandbox") + 1].decode() == SANDBOX
    assert SANDBOX == "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


async def test_the_qmp_socket_is_closed_to_other_users(confined: Confined) -> None:
    files = run_files(confined.hv.run_dir(NAME))
    assert mode(files["qmp"]) & 0o077 == 0
    assert (mode(files["qemu"]), os.stat(files["qemu"]).st_uid) == (0o700, confined.user.uid)
    if os.geteuid() == 0:  # another unprivileged user cannot even reach it
        probe = (
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n sys.exit(13)\n"
        )
        done = await asyncio.create_subprocess_exec(
            *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"),
            *(sys.executable, "-c", probe, str(files["qmp"])),
        )
        assert await asyncio.wait_for(done.wait(), 30) == 13


async def test_the_machine_record_is_out_of_qemus_reach(confined: Confined) -> None:
    run_dir = confined.hv.run_dir(NAME)
    assert os.stat(run_dir).st_uid == os.geteuid()
    assert mode(run_dir) == 0o711
    assert os.stat(run_files(run_dir)["record"]).st_uid == os.geteuid()


async def test_a_confined_guest_hotplugs_a_vcpu(confined: Confined) -> None:
    await confined.hv.set_sockets(NAME, 2)
    await confined.console(lambda s: s["vcpus"] == "2", GUEST_DEADLINE)
    assert (await confined.hv.observe(NAME)).vcpus == 2


async def test_a_confined_guest_hotplugs_a_claim_the_preparer_made(confined: Confined) -> None:
    vmi = claim_vmi()
    spec = machine_spec(vmi, resolver=confined.paths)
    await confined.preparer.prepare(vmi, spec)
    claim = confined.paths.claim("default", "data-pvc")
    assert (os.stat(claim).st_uid, mode(claim)) == (confined.user.uid, 0o600)
    assert mode(claim.parent) == 0o711
    await confined.hv.attach_disk(NAME, spec.disks[0])
    await confined.console(lambda s: "vda" in s["blk"].split(","), GUEST_DEADLINE)
    assert [d.name for d in (await confined.hv.observe(NAME)).disks] == ["data"]
