"""QemuHypervisor's live migration between two drivers (two hosts' machine directories), real QEMU 7.2
running the test guest under TCG, over TCP on loopback.

One guest is booted for the module. The failing migrations come first (a cancel, a target killed
mid-stream): after each the guest runs on at its source. The last test hot-plugs a vCPU, a DIMM and
a disk, then moves the guest: its console on the target goes on counting uptime from where the
source's stopped (no new boot), the hot-plugged devices are there, and the copied disk's content is
identical on both sides.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_asyncio
from plane_support import reachable_dir
from test_qemu_driver import BOOT_DEADLINE, Changes, Console, kernel_boot, kill_leftovers, listed

from vmplane.hypervisor.base import DiskSpec, HypervisorError, MachineSpec, MachineState, NicSpec
from vmplane.hypervisor.guestfs import guest_user, hand_over
from vmplane.hypervisor.migration import (
    MigrationEndpoint,
    MigrationProgress,
    MigrationSettings,
    MigrationStatus,
)
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.hypervisor.qemu.naming import run_files

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.requires("qemu"),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]
MiB = 1 << 20
NAME = "default/mover"
MIGRATION_DEADLINE = 120.0
#: Slow enough (256 MiB at 2 MiB/s) that a cancel or a kill always lands mid-stream.
SLOW = MigrationSettings(bandwidth_bytes_per_second=2 * MiB)
FAST = MigrationSettings()


@dataclass
class Host:
    base_dir: Path
    hv: QemuHypervisor
    changes: Changes

    def console(self) -> Console:
        return Console(run_files(self.hv.run_dir(NAME))["console"])

    def pid(self) -> int:
        return int(run_files(self.hv.run_dir(NAME))["pidfile"].read_text())


def image(path: Path, *, pattern: int | None) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    if pattern is not None:
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} 0 4M", str(path)], check=True)
    hand_over(path, guest_user(euid=os.geteuid()))
    return path


def spec_on(host: Host, *, data: bool) -> MachineSpec:
    """The VMI's spec as each host's agent writes it: the same devices, that host's image paths."""
    disks = (DiskSpec("scratch", str(host.base_dir / "scratch.qcow2")),)
    if data:
        disks += (DiskSpec("data", str(host.base_dir / "data.qcow2")),)
    return MachineSpec(
        name=NAME,
        uuid=MACHINE_UUID,
        sockets=1,
        max_sockets=2,
        memory_bytes=256 * MiB,
        max_memory_bytes=1024 * MiB,
        disks=disks,
        nics=(NicSpec("default", "52:54:00:00:00:01"), NicSpec("cold", "52:54:00:00:00:03", link_up=False)),
        kernel_boot=kernel_boot(),
        spare_root_ports=4,
    )


MACHINE_UUID = str(uuid.uuid4())


def make_host(prefix: str) -> Host:
    base_dir = reachable_dir(prefix)
    changes = Changes()
    return Host(base_dir, QemuHypervisor(base_dir=base_dir, accel="tcg", on_change=changes), changes)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hosts() -> AsyncIterator[tuple[Host, Host]]:
    source, target = make_host("vmplane-mig-src-"), make_host("vmplane-mig-dst-")
    image(source.base_dir / "scratch.qcow2", pattern=0xAB)
    await source.hv.start(replace(spec_on(source, data=False)))
    await source.console().wait(lambda s: True, timeout=BOOT_DEADLINE)
    try:
        yield source, target
    finally:
        for host in (source, target):
            with contextlib.suppress(HypervisorError):
                await host.hv.stop(NAME, grace_period=0)
            await host.hv.close()
            kill_leftovers(host.base_dir)
            shutil.rmtree(host.base_dir, ignore_errors=True)


async def prepare_target(source: Host, target: Host, *, data: bool) -> MigrationEndpoint:
    """What the target agent does: fresh (empty) images for the copied disks, then an incoming machine."""
    for name in ("scratch", *(("data",) if data else ())):
        path = target.base_dir / f"{name}.qcow2"
        path.unlink(missing_ok=True)
        image(path, pattern=None)
    layout = await source.hv.migration_layout(NAME)
    endpoint = await target.hv.prepare_incoming(
        spec_on(target, data=data), layout, listen_host="127.0.0.1", copied_disks=copied(data)
    )
    assert (await target.hv.observe(NAME)).state is MachineState.INCOMING
    return endpoint


def copied(data: bool) -> tuple[str, ...]:
    return ("data", "scratch") if data else ("scratch",)


async def until_finished(host: Host) -> MigrationProgress:
    deadline = time.monotonic() + MIGRATION_DEADLINE
    while time.monotonic() < deadline:
        progress = await host.hv.migration_progress(NAME)
        if progress.finished:
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"the migration did not end within {MIGRATION_DEADLINE}s")


async def until_moving(host: Host) -> MigrationProgress:
    deadline = time.monotonic() + MIGRATION_DEADLINE
    while time.monotonic() < deadline:
        progress = await host.hv.migration_progress(NAME)
        if progress.transferred_bytes > 0:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError("the migration never moved memory")


async def forget_target(target: Host) -> None:
    deadline = time.monotonic() + 30
    while (await target.hv.observe(NAME)).state not in (MachineState.STOPPED, MachineState.CRASHED):
        assert time.monotonic() < deadline, "the incoming machine did not end after its migration failed"
        await asyncio.sleep(0.1)
    await target.hv.forget(NAME)


async def test_cancel_mid_migration_keeps_the_guest_on_its_source(hosts: tuple[Host, Host]) -> None:
    source, target = hosts
    endpoint = await prepare_target(source, target, data=False)
    await source.hv.migrate(NAME, endpoint, copied_disks=copied(False), settings=SLOW)
    moving = await until_moving(source)
    assert moving.status is MigrationStatus.ACTIVE
    assert moving.disk_total_bytes > 0
    await source.hv.cancel_migration(NAME)
    assert (await until_finished(source)).status is MigrationStatus.CANCELLED
    assert (await source.hv.observe(NAME)).state is MachineState.RUNNING
    last = float(source.console().statuses()[-1]["uptime"])
    await source.console().wait(lambda s: float(s["uptime"]) > last + 1)
    await forget_target(target)


async def test_a_killed_target_fails_the_migration_and_the_guest_runs_on(hosts: tuple[Host, Host]) -> None:
    source, target = hosts
    endpoint = await prepare_target(source, target, data=False)
    await source.hv.migrate(NAME, endpoint, copied_disks=copied(False), settings=SLOW)
    await until_moving(source)
    os.kill(target.pid(), signal.SIGKILL)
    failed = await until_finished(source)
    assert failed.status is MigrationStatus.FAILED
    assert failed.error
    assert (await source.hv.observe(NAME)).state is MachineState.RUNNING
    last = float(source.console().statuses()[-1]["uptime"])
    await source.console().wait(lambda s: float(s["uptime"]) > last + 1)
    assert (await target.hv.observe(NAME)).state is MachineState.CRASHED
    await target.hv.forget(NAME)


async def test_a_target_killed_as_the_migration_starts_fails_it_and_the_guest_runs_on(
    hosts: tuple[Host, Host],
) -> None:
    source, target = hosts
    endpoint = await prepare_target(source, target, data=False)
    await source.hv.migrate(NAME, endpoint, copied_disks=copied(False), settings=SLOW)
    os.kill(target.pid(), signal.SIGKILL)
    ended = await until_finished(source)
    assert ended.status is MigrationStatus.FAILED
    assert (await source.hv.observe(NAME)).state is MachineState.RUNNING
    last = float(source.console().statuses()[-1]["uptime"])
    await source.console().wait(lambda s: float(s["uptime"]) > last + 1)
    await forget_target(target)


async def test_migrates_with_hotplugged_devices_and_no_reboot(hosts: tuple[Host, Host]) -> None:
    source, target = hosts
    await source.hv.set_sockets(NAME, 2)
    await source.hv.set_memory(NAME, 512 * MiB)
    await source.hv.attach_disk(
        NAME, DiskSpec("data", str(image(source.base_dir / "data.qcow2", pattern=0xCD)))
    )
    before = await source.console().wait(lambda s: s["vcpus"] == "2" and len(listed(s, "blk")) == 2)
    endpoint = await prepare_target(source, target, data=True)
    started = time.monotonic()
    await source.hv.migrate(NAME, endpoint, copied_disks=copied(True), settings=FAST)
    done = await until_finished(source)
    print(f"TIMING migration {time.monotonic() - started:.2f}s, QEMU downtime {done.downtime_ms} ms")
    assert done.status is MigrationStatus.COMPLETED, done.error
    assert (await source.hv.observe(NAME)).state is MachineState.MIGRATED
    deadline = time.monotonic() + 30
    while (observed := await target.hv.observe(NAME)).state is not MachineState.RUNNING:
        assert time.monotonic() < deadline, f"the target never ran the guest: {observed}"
        await asyncio.sleep(0.1)
    assert (observed.sockets, observed.vcpus, observed.memory_bytes) == (2, 2, 512 * MiB)
    assert {n.name: n.link_up for n in observed.nics} == {"cold": False, "default": True}
    assert sorted(d.name for d in observed.disks) == ["data", "scratch"]
    after = await target.console().wait(lambda s: float(s["uptime"]) > float(before["uptime"]))
    assert (after["vcpus"], after["carrier"]) == ("2", "eth0:1,eth1:0")
    assert "VMPLANE-BOOTED" not in target.console().path.read_text(errors="replace")
    await source.hv.stop(NAME, grace_period=0)
    await target.hv.stop(NAME, grace_period=0)
    for disk in ("scratch", "data"):
        compare = [
            "qemu-img",
            "compare",
            "-q",
            str(source.base_dir / f"{disk}.qcow2"),
            str(target.base_dir / f"{disk}.qcow2"),
        ]
        # Both QEMUs have ended: nothing else runs on the loop while qemu-img reads the images.
        compared = subprocess.run(compare, check=False)  # noqa: ASYNC221
        assert compared.returncode == 0, f"{disk} differs after the migration"
