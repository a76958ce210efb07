"""QemuHypervisor against a real QEMU 7.2 running the test guest under TCG.

Needs ``qemu-system-x86_64``, ``qemu-img`` and the guest from ``python guest/build.py`` (CI runs
``scripts/ci-install-qemu.sh``). One guest is booted for the module and the hotplug tests share it;
they run in file order and the last two (adoption by a second driver, then ``kill -9``) end it.
Everything waits on the guest's ``VMPLANE-STATUS`` console lines or on driver callbacks, with
deadlines. TCG is pinned: KVM on the project's machines hangs Linux guests (see ``accel.py``).

Timings are printed as ``TIMING`` lines (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from plane_support import reachable_dir, reachable_guest

from vmplane.hypervisor.base import (
    DiskSpec,
    HypervisorError,
    KernelBoot,
    MachineSpec,
    MachineState,
    NicSpec,
    UnplugTimeoutError,
)
from vmplane.hypervisor.guestfs import guest_user, hand_over
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.hypervisor.qemu.naming import run_files

GUEST = Path(__file__).resolve().parents[2] / "guest" / "out"
MiB = 1 << 20
BOOT_DEADLINE = 90.0
GUEST_DEADLINE = 15.0

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.asyncio(loop_scope="module")]


def timing(what: str, seconds: float) -> None:
    print(f"TIMING {what}: {seconds * 1000:.1f} ms")


Status = dict[str, str]


def parse_status(line: str) -> Status:
    return dict(token.split("=", 1) for token in line.split()[1:] if "=" in token)


@dataclass
class Console:
    """The guest's serial log; ``wait`` polls it for a status line matching a predicate."""

    path: Path

    def statuses(self) -> list[Status]:
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return [parse_status(line) for line in text.splitlines() if line.startswith("VMPLANE-STATUS ")]

    async def wait(self, predicate: Callable[[Status], bool], *, timeout: float = GUEST_DEADLINE) -> Status:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            statuses = self.statuses()
            for status in statuses[seen:]:
                with contextlib.suppress(KeyError, ValueError):
                    if predicate(status):
                        return status
            seen = len(statuses)
            if loop.time() > deadline:
                raise AssertionError(f"no matching status line within {timeout}s; last: {statuses[-1:]}")
            await asyncio.sleep(0.05)


def listed(status: Status, key: str) -> list[str]:
    return [] if status[key] == "-" else status[key].split(",")


@dataclass
class Changes:
    """The driver's ``on_change`` calls."""

    names: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.changed.set()


@dataclass
class Guest:
    name: str
    base_dir: Path
    hv: QemuHypervisor
    console: Console
    changes: Changes

    @property
    def pid(self) -> int:
        return int(run_files(self.hv.run_dir(self.name))["pidfile"].read_text())


def kernel_boot() -> KernelBoot:
    return KernelBoot(*(str(f) for f in reachable_guest()), (GUEST / "cmdline").read_text().strip())


def kill_leftovers(base_dir: Path) -> None:
    """SIGKILL QEMUs this module started that a failed test left running (by recorded pid)."""
    for pidfile in base_dir.glob("*/qemu/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A machines directory QEMU's user can reach (pytest's ``tmp_path`` is closed to it as root)."""
    path = reachable_dir("vmplane-e2e-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def image(base_dir: Path) -> Path:
    """A fresh 64 MiB qcow2 image, handed to QEMU's user as the volume preparer does."""
    path = base_dir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    hand_over(path, guest_user(euid=os.geteuid()))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guest() -> AsyncIterator[Guest]:
    base_dir = reachable_dir("vmplane-e2e-guest-")
    spec = MachineSpec(
        name="e2e",
        uuid=str(uuid.uuid4()),
        sockets=1,
        max_sockets=2,
        memory_bytes=256 * MiB,
        max_memory_bytes=1024 * MiB,
        nics=(NicSpec("default", "52:54:00:00:00:01"), NicSpec("cold", "52:54:00:00:00:03", link_up=False)),
        kernel_boot=kernel_boot(),
        spare_root_ports=4,
    )
    changes = Changes()
    hv = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=changes)
    g = Guest("e2e", base_dir, hv, Console(run_files(hv.run_dir("e2e"))["console"]), changes)
    started = time.monotonic()
    await hv.start(spec)
    timing("start (spawn + QMP ready + cont)", time.monotonic() - started)
    await g.console.wait(lambda s: True, timeout=BOOT_DEADLINE)
    timing("boot to first status line", time.monotonic() - started)
    try:
        yield g
    finally:
        with contextlib.suppress(HypervisorError):
            await g.hv.stop(g.name, grace_period=0)
        await g.hv.close()
        kill_leftovers(base_dir)
        shutil.rmtree(base_dir, ignore_errors=True)


async def test_boots_and_observes_what_qemu_reports(guest: Guest) -> None:
    observed = await guest.hv.observe(guest.name)
    assert observed.state == MachineState.RUNNING
    assert (observed.sockets, observed.vcpus, observed.memory_bytes) == (1, 1, 256 * MiB)
    assert [(n.name, n.mac, n.link_up) for n in observed.nics] == [
        ("cold", "52:54:00:00:00:03", False),
        ("default", "52:54:00:00:00:01", True),
    ]
    # The NIC booted with its link down (set over QMP before ``cont``) has no carrier in the guest.
    status = await guest.console.wait(lambda s: s["carrier"] == "eth0:1,eth1:0")
    assert (status["vcpus"], listed(status, "net")) == ("1", ["eth0", "eth1"])
    qemu_dir = run_files(guest.hv.run_dir(guest.name))["qemu"]
    assert (os.stat(qemu_dir).st_mode & 0o777, os.stat(qemu_dir).st_uid) == (0o700, guest.hv.user.uid)


async def test_set_sockets_hotplugs_a_vcpu(guest: Guest) -> None:
    started = time.monotonic()
    await guest.hv.set_sockets(guest.name, 2)
    timing("set_sockets 1->2 command", time.monotonic() - started)
    await guest.console.wait(lambda s: s["vcpus"] == "2")
    timing("set_sockets guest-visible", time.monotonic() - started)
    observed = await guest.hv.observe(guest.name)
    assert (observed.sockets, observed.vcpus) == (2, 2)
    with pytest.raises(HypervisorError, match="cannot remove vCPUs live"):
        await guest.hv.set_sockets(guest.name, 1)
    with pytest.raises(HypervisorError, match="room for 2"):
        await guest.hv.set_sockets(guest.name, 3)


async def test_set_memory_grows_and_shrinks_with_dimms(guest: Guest) -> None:
    boot_kb = int(guest.console.statuses()[-1]["memtotal_kb"])
    started = time.monotonic()
    await guest.hv.set_memory(guest.name, 512 * MiB)
    timing("set_memory +256Mi command", time.monotonic() - started)
    await guest.console.wait(lambda s: int(s["memtotal_kb"]) >= boot_kb + 256 * 1024)
    timing("set_memory +256Mi guest-visible", time.monotonic() - started)
    assert (await guest.hv.observe(guest.name)).memory_bytes == 512 * MiB

    started = time.monotonic()
    await guest.hv.set_memory(guest.name, 256 * MiB)
    timing("set_memory -256Mi (DIMM unplug, DEVICE_DELETED awaited)", time.monotonic() - started)
    assert (await guest.hv.observe(guest.name)).memory_bytes == 256 * MiB
    await guest.console.wait(lambda s: int(s["memtotal_kb"]) == boot_kb)
    with pytest.raises(HypervisorError, match="below the boot size"):
        await guest.hv.set_memory(guest.name, 128 * MiB)


async def test_attach_and_detach_disk(guest: Guest, image: Path) -> None:
    started = time.monotonic()
    await guest.hv.attach_disk(guest.name, DiskSpec("data", str(image)))
    timing("attach_disk command", time.monotonic() - started)
    await guest.console.wait(lambda s: "vda" in listed(s, "blk"))
    timing("attach_disk guest-visible", time.monotonic() - started)
    observed = await guest.hv.observe(guest.name)
    assert [(d.name, d.path) for d in observed.disks] == [("data", str(image))]

    await guest.hv.attach_disk(guest.name, DiskSpec("data", str(image)))  # idempotent

    started = time.monotonic()
    await guest.hv.detach_disk(guest.name, "data", timeout=10)
    timing("detach_disk until DEVICE_DELETED", time.monotonic() - started)
    assert (await guest.hv.observe(guest.name)).disks == ()
    await guest.console.wait(lambda s: listed(s, "blk") == [])
    await guest.hv.detach_disk(guest.name, "data", timeout=10)  # already gone: a no-op


async def test_attach_nic_set_link_and_detach(guest: Guest) -> None:
    started = time.monotonic()
    await guest.hv.attach_nic(guest.name, NicSpec("extra", "52:54:00:00:00:02"))
    timing("attach_nic command", time.monotonic() - started)
    await guest.console.wait(
        lambda s: listed(s, "net") == ["eth0", "eth1", "eth2"] and "eth2:1" in s["carrier"]
    )
    timing("attach_nic guest-visible", time.monotonic() - started)

    started = time.monotonic()
    await guest.hv.set_link(guest.name, "extra", up=False)
    timing("set_link down command", time.monotonic() - started)
    observed = await guest.hv.observe(guest.name)
    assert {n.name: n.link_up for n in observed.nics} == {"cold": False, "default": True, "extra": False}
    await guest.console.wait(lambda s: "eth2:0" in s["carrier"])
    timing("set_link down guest-visible (carrier 0)", time.monotonic() - started)

    started = time.monotonic()
    await guest.hv.detach_nic(guest.name, "extra", timeout=10)
    timing("detach_nic until DEVICE_DELETED", time.monotonic() - started)
    assert [n.name for n in (await guest.hv.observe(guest.name)).nics] == ["cold", "default"]
    await guest.console.wait(lambda s: listed(s, "net") == ["eth0", "eth1"])


async def test_a_new_driver_adopts_the_running_guest(guest: Guest) -> None:
    pid = guest.pid
    before = float(guest.console.statuses()[-1]["uptime"])
    await guest.hv.close()
    guest.hv = QemuHypervisor(base_dir=guest.base_dir, accel="tcg", on_change=guest.changes)
    started = time.monotonic()
    assert await guest.hv.adopt() == [guest.name]
    timing("adopt", time.monotonic() - started)
    assert guest.pid == pid
    observed = await guest.hv.observe(guest.name)
    assert (observed.state, observed.sockets, observed.memory_bytes) == (MachineState.RUNNING, 2, 256 * MiB)
    status = await guest.console.wait(lambda s: float(s["uptime"]) > before + 0.5)
    assert float(status["uptime"]) > before  # the same boot: no restart
    assert await guest.hv.adopt() == [guest.name]  # idempotent


async def test_kill_9_is_reported_as_a_crash_within_2s(guest: Guest) -> None:
    guest.changes.changed.clear()
    started = time.monotonic()
    os.kill(guest.pid, signal.SIGKILL)
    async with asyncio.timeout(2.0):
        await guest.changes.changed.wait()
    timing("kill -9 to on_change", time.monotonic() - started)
    observed = await guest.hv.observe(guest.name)
    assert observed.state == MachineState.CRASHED
    assert "SIGKILL" in observed.reason
    assert guest.changes.names[-1] == guest.name
    assert time.monotonic() - started < 2.0
    await guest.hv.forget(guest.name)
    assert not guest.hv.run_dir(guest.name).exists()


async def test_unplug_timeout_stop_and_forget(base_dir: Path, image: Path) -> None:
    """A guest that never acknowledges (here: still in firmware) leaves the unplug pending."""
    changes: list[str] = []
    hv = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=changes.append)
    spec = MachineSpec(name="short", uuid=str(uuid.uuid4()), sockets=1, kernel_boot=kernel_boot())
    try:
        await hv.start(spec)
        await hv.attach_disk("short", DiskSpec("pending", str(image)))
        with pytest.raises(UnplugTimeoutError):
            await hv.detach_disk("short", "pending", timeout=0.3)
        assert (await hv.observe("short")).pending_unplugs == ("disk-pending",)
        started = time.monotonic()
        await hv.stop("short", grace_period=0.5)  # busybox ignores the ACPI button: quit follows
        timing("stop with 0.5s grace", time.monotonic() - started)
        observed = await hv.observe("short")
        assert (observed.state, observed.reason) == (MachineState.STOPPED, "stopped")
        assert "short" in changes
        await hv.stop("short", grace_period=0.5)  # idempotent
        with pytest.raises(HypervisorError, match="forget it"):
            await hv.start(spec)
        await hv.forget("short")
        assert not (base_dir / "short").exists()
    finally:
        await hv.close()
        kill_leftovers(base_dir)


async def test_start_failure_reports_qemu_stderr(base_dir: Path) -> None:
    hv = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=lambda _: None)
    spec = MachineSpec(
        name="bad", uuid=str(uuid.uuid4()), sockets=1, kernel_boot=KernelBoot("/nonexistent/vmlinuz")
    )
    try:
        with pytest.raises(HypervisorError, match="could not open kernel file"):
            await hv.start(spec)
        assert not (base_dir / "bad").exists()
    finally:
        await hv.close()


async def test_adopt_reports_a_guest_that_ended_while_unwatched(base_dir: Path) -> None:
    hv = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=lambda _: None)
    await hv.start(MachineSpec(name="gone", uuid=str(uuid.uuid4()), sockets=1, kernel_boot=kernel_boot()))
    pid = int(run_files(hv.run_dir("gone"))["pidfile"].read_text())
    await hv.close()  # the agent goes away; QEMU keeps running
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(os.waitpid, pid, 0)  # QEMU is our child here: reap it as init would
    hv = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=lambda _: None)
    try:
        assert await hv.adopt() == ["gone"]
        observed = await hv.observe("gone")
        assert (observed.state, observed.reason) == (
            MachineState.CRASHED,
            "QEMU exited while no agent was watching it",
        )
        with pytest.raises(HypervisorError, match="not running"):
            await hv.set_sockets("gone", 1)
        await hv.forget("gone")
        assert await hv.adopt() == []
    finally:
        await hv.close()
        kill_leftovers(base_dir)


async def test_a_machine_held_by_another_driver_is_not_adopted_or_restarted(base_dir: Path) -> None:
    spec = MachineSpec(name="held", uuid=str(uuid.uuid4()), sockets=1, kernel_boot=kernel_boot())
    owner = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=lambda _: None)
    other = QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=lambda _: None, connect_timeout=0.5)
    try:
        await owner.start(spec)
        assert await other.adopt() == []  # QMP serves one client: the owner's
        with pytest.raises(HypervisorError, match="already running"):
            await other.start(spec)
        assert (await owner.observe("held")).state == MachineState.RUNNING
        await owner.stop("held", grace_period=0)
    finally:
        await owner.close()
        await other.close()
        kill_leftovers(base_dir)
