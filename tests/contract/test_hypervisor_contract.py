"""The Hypervisor contract, run against every driver: ``SimulatedHypervisor`` and ``QemuHypervisor``.

One suite, one set of expectations: what ``observe`` reports after a start and after each hotplug and
unplug (vCPU, memory, disk, NIC, link), which requests are refused and with which error type, how a
dead hypervisor process is reported, and how a new driver adopts a running machine. A driver that
passes it can stand in for the other as far as the node agent can tell.

Per driver, one machine is booted for the module and the tests share it in file order (the last
ones adopt it, then kill it); QEMU runs the test guest under TCG, so this costs one boot. Where the
guest must catch up before the next step (an unplug needs a guest that has taken the device), the
QEMU harness waits for the guest's ``VMPLANE-STATUS`` console line; the simulated one has no guest.

Where the simulated driver cannot match QEMU, the difference is an entry in ``KNOWN_DIFFERENCES``
and the test that meets it names the entry. Error *messages* are the drivers' own; the contract is
the error type.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from plane_support import reachable_dir, reachable_guest

from vmplane.hypervisor.base import (
    DiskSpec,
    HotplugError,
    Hypervisor,
    HypervisorError,
    KernelBoot,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    NicSpec,
    UnplugTimeoutError,
)
from vmplane.hypervisor.guestfs import guest_user, hand_over
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.hypervisor.qemu.naming import run_files
from vmplane.hypervisor.simulated import SimulatedHypervisor

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

GUEST = Path(__file__).resolve().parents[2] / "guest" / "out"
MiB = 1 << 20
BOOT_DEADLINE = 90.0
GUEST_DEADLINE = 15.0
NAME = "contract"

#: Where the simulated driver knowingly differs from QEMU, and why it does not matter to the agent.
KNOWN_DIFFERENCES: dict[str, str] = {
    "no-guest": "The simulated driver has no guest: a hotplug is complete when the request returns, "
    "where QEMU's guest takes 0.2-0.8 s to see it. The contract checks what observe reports, which "
    "is the hypervisor's view in both.",
    "unplug-ignored-by-injection": "A guest that ignores unplug requests is made with "
    "never_ack_unplug() in the simulated driver; with QEMU it is a guest that has not booted far "
    "enough to handle PCIe hot-unplug yet (a fresh machine, asked at once).",
    "crash-by-injection": "The simulated driver's process death is kill() on the driver; QEMU's is "
    "SIGKILL to its pid. Both report Crashed with a reason naming SIGKILL.",
    "dimm-slots": "QEMU refuses a memory increase once its 16 DIMM slots are used; the simulated "
    "driver does not count slots (reaching 16 needs 16 separate increases; the agent only reports "
    "the refusal, which it handles like any other HotplugError).",
}


def known(difference: str) -> None:
    """Mark the place where a test meets a documented difference (and check that it is documented)."""
    assert difference in KNOWN_DIFFERENCES, difference


@dataclass
class Changes:
    """The driver's ``on_change`` calls."""

    names: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.changed.set()


GuestStatus = dict[str, str]


class Harness:
    """One driver under test, and what the suite needs that the Hypervisor protocol does not give."""

    kind: str
    hv: Hypervisor

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.changes = Changes()

    def spec(self, name: str = NAME, **overrides: Any) -> MachineSpec:
        base = MachineSpec(
            name=name,
            uuid=str(uuid.uuid4()),
            sockets=1,
            max_sockets=2,
            memory_bytes=256 * MiB,
            max_memory_bytes=1024 * MiB,
            nics=(
                NicSpec("default", "52:54:00:00:00:01"),
                NicSpec("cold", "52:54:00:00:00:03", link_up=False),
            ),
            kernel_boot=self.kernel_boot(),
            spare_root_ports=4,
        )
        return replace(base, **overrides)

    def kernel_boot(self) -> KernelBoot | None:
        return None

    def image(self, name: str) -> str:
        """A disk image for a hotplug."""
        return str(self.base_dir / f"{name}.qcow2")

    async def booted(self, name: str) -> None:
        """Wait until the guest runs its init (QEMU); at once for the simulated driver."""

    async def guest(self, name: str, predicate: Callable[[GuestStatus], bool]) -> None:
        """Wait until the guest's own status satisfies ``predicate``; at once without a guest."""
        known("no-guest")

    async def new_driver(self) -> None:
        """Close the driver and open a new one on the same host, as a restarted agent would."""
        raise NotImplementedError

    def kill(self, name: str) -> None:
        """The hypervisor process of ``name`` dies (SIGKILL)."""
        raise NotImplementedError

    def ignore_unplugs(self, *, ignore: bool = True) -> None:
        """Make the next fresh machine's guest ignore unplug requests."""
        known("unplug-ignored-by-injection")

    async def close(self) -> None:
        await self.hv.close()


class SimulatedHarness(Harness):
    kind = "simulated"
    hv: SimulatedHypervisor

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self.hv = SimulatedHypervisor(on_change=self.changes)

    async def new_driver(self) -> None:
        host = self.hv.host
        await self.hv.close()
        self.hv = SimulatedHypervisor(on_change=self.changes, host=host)

    def kill(self, name: str) -> None:
        known("crash-by-injection")
        self.hv.kill(name)

    def ignore_unplugs(self, *, ignore: bool = True) -> None:
        super().ignore_unplugs(ignore=ignore)
        self.hv.never_ack_unplug(never=ignore)


class QemuHarness(Harness):
    kind = "qemu"
    hv: QemuHypervisor

    def __init__(self, base_dir: Path) -> None:
        # Where QEMU's user (vmplane-qemu when root) can reach: pytest's directories are closed to it.
        super().__init__(reachable_dir("vmplane-contract-"))
        self.user = guest_user(euid=os.geteuid())
        self.hv = self._driver()

    def _driver(self) -> QemuHypervisor:
        return QemuHypervisor(base_dir=self.base_dir / "vms", accel="tcg", on_change=self.changes)

    def kernel_boot(self) -> KernelBoot:
        cmdline = (GUEST / "cmdline").read_text().strip()
        return KernelBoot(*(str(f) for f in reachable_guest()), cmdline)

    def image(self, name: str) -> str:
        path = self.base_dir / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True, timeout=30)
        hand_over(path, self.user)
        return str(path)

    def _statuses(self, name: str) -> list[GuestStatus]:
        console = run_files(self.hv.run_dir(name))["console"]
        text = console.read_text(errors="replace") if console.exists() else ""
        return [
            dict(token.split("=", 1) for token in line.split()[1:] if "=" in token)
            for line in text.splitlines()
            if line.startswith("VMPLANE-STATUS ")
        ]

    async def _wait(self, name: str, predicate: Callable[[GuestStatus], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            statuses = self._statuses(name)
            with contextlib.suppress(KeyError, ValueError):
                if statuses and predicate(statuses[-1]):
                    return
            if loop.time() > deadline:
                raise AssertionError(f"guest status not reached within {timeout}s; last: {statuses[-1:]}")
            await asyncio.sleep(0.05)

    async def booted(self, name: str) -> None:
        await self._wait(name, lambda s: True, BOOT_DEADLINE)

    async def guest(self, name: str, predicate: Callable[[GuestStatus], bool]) -> None:
        await self._wait(name, predicate, GUEST_DEADLINE)

    async def new_driver(self) -> None:
        await self.hv.close()
        self.hv = self._driver()

    def kill(self, name: str) -> None:
        known("crash-by-injection")
        os.kill(int(run_files(self.hv.run_dir(name))["pidfile"].read_text()), signal.SIGKILL)

    def ignore_unplugs(self, *, ignore: bool = True) -> None:
        super().ignore_unplugs(ignore=ignore)  # a fresh machine's guest is still booting

    async def close(self) -> None:
        await super().close()
        for pidfile in (self.base_dir / "vms").glob("*/qemu/qemu.pid"):  # whatever a failed test left
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(self.base_dir, ignore_errors=True)


DRIVERS = [
    pytest.param(SimulatedHarness, id="simulated"),
    pytest.param(QemuHarness, id="qemu", marks=[pytest.mark.requires("qemu"), pytest.mark.e2e]),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=DRIVERS)
async def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    made: Harness = request.param(tmp_path_factory.mktemp("hv"))
    try:
        yield made
    finally:
        with contextlib.suppress(HypervisorError):
            await made.hv.stop(NAME, grace_period=0)
        await made.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machine(harness: Harness) -> str:
    """The shared machine: booted once per driver, killed by the last tests."""
    await harness.hv.start(harness.spec())
    await harness.booted(NAME)
    return NAME


def links(observed: Any) -> dict[str, bool]:
    return {n.name: n.link_up for n in observed.nics}


def listed(status: GuestStatus, key: str) -> list[str]:
    return [] if status[key] == "-" else status[key].split(",")


# -- start and observe ------------------------------------------------------------------------------


async def test_a_started_machine_observes_as_booted(harness: Harness, machine: str) -> None:
    observed = await harness.hv.observe(machine)
    assert observed.state is MachineState.RUNNING
    assert (observed.sockets, observed.cores, observed.threads, observed.vcpus) == (1, 1, 1, 1)
    assert observed.memory_bytes == 256 * MiB
    assert [(n.name, n.mac, n.link_up) for n in observed.nics] == [
        ("cold", "52:54:00:00:00:03", False),
        ("default", "52:54:00:00:00:01", True),
    ]
    assert (observed.disks, observed.pending_unplugs, observed.name) == ((), (), machine)


async def test_starting_a_running_machine_again_is_a_no_op(harness: Harness, machine: str) -> None:
    await harness.hv.start(harness.spec())
    assert (await harness.hv.observe(machine)).state is MachineState.RUNNING


async def test_an_unknown_machine_is_not_found(harness: Harness, machine: str) -> None:
    with pytest.raises(MachineNotFoundError):
        await harness.hv.observe("nobody")
    with pytest.raises(MachineNotFoundError):
        await harness.hv.set_sockets("nobody", 2)
    with pytest.raises(MachineNotFoundError):
        await harness.hv.stop("nobody", grace_period=0)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"sockets": 0}, id="no-sockets"),
        pytest.param({"sockets": 2, "max_sockets": 1}, id="max-sockets-below-sockets"),
        pytest.param({"memory_bytes": 100 * MiB + 1}, id="memory-not-whole-MiB"),
        pytest.param({"max_memory_bytes": 128 * MiB}, id="max-memory-below-memory"),
        pytest.param(
            {"nics": (NicSpec("odd", "52:54:00:00:00:09", model="token-ring"),)}, id="unknown-nic-model"
        ),
    ],
)
async def test_a_spec_qemu_cannot_boot_is_refused(
    harness: Harness, machine: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(HypervisorError):
        await harness.hv.start(harness.spec("refused", **overrides))
    with pytest.raises(MachineNotFoundError):
        await harness.hv.observe("refused")


# -- vCPU -----------------------------------------------------------------------------------------


async def test_set_sockets_hotplugs_a_vcpu(harness: Harness, machine: str) -> None:
    await harness.hv.set_sockets(machine, 2)
    observed = await harness.hv.observe(machine)
    assert (observed.sockets, observed.vcpus) == (2, 2)
    await harness.guest(machine, lambda s: s["vcpus"] == "2")
    await harness.hv.set_sockets(machine, 2)  # already there: a no-op
    assert (await harness.hv.observe(machine)).sockets == 2


async def test_vcpus_beyond_max_sockets_are_refused(harness: Harness, machine: str) -> None:
    with pytest.raises(HotplugError):
        await harness.hv.set_sockets(machine, 3)
    assert (await harness.hv.observe(machine)).sockets == 2


async def test_vcpu_unplug_is_refused(harness: Harness, machine: str) -> None:
    with pytest.raises(HotplugError):
        await harness.hv.set_sockets(machine, 1)
    assert (await harness.hv.observe(machine)).sockets == 2


# -- memory ---------------------------------------------------------------------------------------


async def test_set_memory_grows_and_shrinks(harness: Harness, machine: str) -> None:
    await harness.hv.set_memory(machine, 512 * MiB)
    assert (await harness.hv.observe(machine)).memory_bytes == 512 * MiB
    await harness.guest(machine, lambda s: int(s["memtotal_kb"]) > 300 * 1024)  # boots with ~140 MiB free
    await harness.hv.set_memory(machine, 256 * MiB)
    assert (await harness.hv.observe(machine)).memory_bytes == 256 * MiB


@pytest.mark.parametrize(
    "memory",
    [
        pytest.param(128 * MiB, id="below-the-boot-size"),
        pytest.param(2048 * MiB, id="above-the-maximum"),
        pytest.param(256 * MiB + 64 * MiB, id="not-a-128MiB-block"),
    ],
)
async def test_memory_outside_what_the_guest_can_use_is_refused(
    harness: Harness, machine: str, memory: int
) -> None:
    with pytest.raises(HotplugError):
        await harness.hv.set_memory(machine, memory)
    assert (await harness.hv.observe(machine)).memory_bytes == 256 * MiB


# -- disks ----------------------------------------------------------------------------------------


async def test_attach_and_detach_a_disk(harness: Harness, machine: str) -> None:
    path = harness.image("data")
    await harness.hv.attach_disk(machine, DiskSpec("data", path))
    assert [(d.name, d.path, d.cdrom) for d in (await harness.hv.observe(machine)).disks] == [
        ("data", path, False)
    ]
    await harness.guest(machine, lambda s: listed(s, "blk") == ["vda"])
    await harness.hv.attach_disk(machine, DiskSpec("data", path))  # there already: a no-op
    assert len((await harness.hv.observe(machine)).disks) == 1

    await harness.hv.detach_disk(machine, "data", timeout=10)
    assert (await harness.hv.observe(machine)).disks == ()
    await harness.hv.detach_disk(machine, "data", timeout=10)  # gone already: a no-op
    await harness.guest(machine, lambda s: listed(s, "blk") == [])


async def test_attach_and_detach_a_scsi_disk(harness: Harness, machine: str) -> None:
    path = harness.image("lun")
    await harness.hv.attach_disk(machine, DiskSpec("lun", path, bus="scsi"))
    assert [(d.name, d.path) for d in (await harness.hv.observe(machine)).disks] == [("lun", path)]
    await harness.guest(machine, lambda s: listed(s, "blk") == ["sda"])
    await harness.hv.detach_disk(machine, "lun", timeout=10)
    assert (await harness.hv.observe(machine)).disks == ()
    await harness.guest(machine, lambda s: listed(s, "blk") == [])


@pytest.mark.parametrize(
    "disk",
    [
        pytest.param(DiskSpec("cd", "/nonexistent.iso", format="raw", bus="sata", cdrom=True), id="cdrom"),
        pytest.param(DiskSpec("sata", "/nonexistent.qcow2", bus="sata"), id="sata"),
    ],
)
async def test_cdrom_drives_and_sata_disks_do_not_hotplug(
    harness: Harness, machine: str, disk: DiskSpec
) -> None:
    with pytest.raises(HotplugError, match="cannot be hot-plugged"):
        await harness.hv.attach_disk(machine, disk)
    assert (await harness.hv.observe(machine)).disks == ()


async def test_a_cdrom_medium_is_inserted_changed_and_ejected(harness: Harness, machine: str) -> None:
    empty = DiskSpec("cd", "", bus="sata", cdrom=True, readonly=True)
    name = f"{NAME}-cd"
    await harness.hv.start(harness.spec(name, disks=(empty,), nics=()))
    try:
        await harness.booted(name)
        await harness.guest(name, lambda s: s["media"] == "sr0:-")
        for image in ("iso-a", "iso-b"):
            disk = replace(empty, path=harness.image(image))
            await harness.hv.change_medium(name, disk)
            await harness.hv.change_medium(name, disk)  # it holds that medium already: a no-op
            assert [(d.name, d.path, d.cdrom) for d in (await harness.hv.observe(name)).disks] == [
                ("cd", disk.path, True)
            ]
            await harness.guest(name, lambda s: s["media"] == f"sr0:{64 * MiB // 512}")
        await harness.hv.change_medium(name, empty)
        assert [(d.path, d.cdrom) for d in (await harness.hv.observe(name)).disks] == [("", True)]
        await harness.guest(name, lambda s: s["media"] == "sr0:-")
    finally:
        await harness.hv.stop(name, grace_period=0)
        await harness.hv.forget(name)


async def test_a_medium_for_a_drive_that_is_not_there_is_refused(harness: Harness, machine: str) -> None:
    with pytest.raises(HotplugError, match="no CD-ROM drive"):
        await harness.hv.change_medium(machine, DiskSpec("cd", harness.image("iso"), cdrom=True))


# -- NICs -----------------------------------------------------------------------------------------


async def test_attach_a_nic_set_its_link_and_detach_it(harness: Harness, machine: str) -> None:
    await harness.hv.attach_nic(machine, NicSpec("extra", "52:54:00:00:00:02"))
    observed = await harness.hv.observe(machine)
    assert [(n.name, n.mac) for n in observed.nics if n.name == "extra"] == [("extra", "52:54:00:00:00:02")]
    assert links(observed) == {"cold": False, "default": True, "extra": True}
    await harness.guest(machine, lambda s: len(listed(s, "net")) == 3)
    await harness.hv.attach_nic(machine, NicSpec("extra", "52:54:00:00:00:02"))  # a no-op

    await harness.hv.set_link(machine, "extra", up=False)
    assert links(await harness.hv.observe(machine)) == {"cold": False, "default": True, "extra": False}
    await harness.hv.set_link(machine, "cold", up=True)
    assert links(await harness.hv.observe(machine)) == {"cold": True, "default": True, "extra": False}

    await harness.hv.detach_nic(machine, "extra", timeout=10)
    assert [n.name for n in (await harness.hv.observe(machine)).nics] == ["cold", "default"]
    await harness.hv.detach_nic(machine, "extra", timeout=10)  # gone already: a no-op
    await harness.guest(machine, lambda s: len(listed(s, "net")) == 2)


async def test_a_nic_of_an_unknown_model_is_refused(harness: Harness, machine: str) -> None:
    with pytest.raises(HotplugError):
        await harness.hv.attach_nic(machine, NicSpec("odd", "52:54:00:00:00:09", model="token-ring"))
    assert [n.name for n in (await harness.hv.observe(machine)).nics] == ["cold", "default"]


async def test_the_link_of_an_unknown_nic_is_refused(harness: Harness, machine: str) -> None:
    with pytest.raises(HypervisorError):
        await harness.hv.set_link(machine, "nothing", up=False)


async def test_pause_and_resume_keep_the_machine_running_and_show_in_observe(
    harness: Harness, machine: str
) -> None:
    await harness.hv.pause(machine)
    paused = await harness.hv.observe(machine)
    assert (paused.state, paused.paused) == (MachineState.RUNNING, True)
    await harness.hv.resume(machine)
    resumed = await harness.hv.observe(machine)
    assert (resumed.state, resumed.paused) == (MachineState.RUNNING, False)


async def test_guest_operations_on_an_unknown_machine_are_not_found(harness: Harness, machine: str) -> None:
    for operation in (harness.hv.pause, harness.hv.resume, harness.hv.reset, harness.hv.soft_reboot):
        with pytest.raises(MachineNotFoundError):
            await operation("default_nothing")


async def test_hotplugs_stop_when_the_spare_root_ports_run_out(harness: Harness, machine: str) -> None:
    disks = [DiskSpec(f"d{i}", harness.image(f"d{i}")) for i in range(4)]
    for disk in disks:
        await harness.hv.attach_disk(machine, disk)
    with pytest.raises(HotplugError):
        await harness.hv.attach_nic(machine, NicSpec("one-too-many", "52:54:00:00:00:0a"))
    assert len((await harness.hv.observe(machine)).disks) == 4
    await harness.guest(machine, lambda s: len(listed(s, "blk")) == 4)
    for disk in disks:
        await harness.hv.detach_disk(machine, disk.name, timeout=10)
    assert (await harness.hv.observe(machine)).disks == ()


# -- adoption and death (these end the shared machine) ---------------------------------------------


async def test_a_new_driver_must_adopt_a_running_machine_before_using_it(
    harness: Harness, machine: str
) -> None:
    await harness.new_driver()
    with pytest.raises(MachineNotFoundError):
        await harness.hv.observe(machine)
    with pytest.raises(HypervisorError, match="adopt"):
        await harness.hv.start(harness.spec())
    assert await harness.hv.adopt() == [machine]
    observed = await harness.hv.observe(machine)
    assert (observed.state, observed.sockets, observed.memory_bytes) == (MachineState.RUNNING, 2, 256 * MiB)
    assert links(observed) == {"cold": True, "default": True}
    assert await harness.hv.adopt() == [machine]  # idempotent


async def test_process_death_is_a_crash_reported_through_on_change(harness: Harness, machine: str) -> None:
    harness.changes.changed.clear()
    harness.kill(machine)
    async with asyncio.timeout(2.0):
        await harness.changes.changed.wait()
    assert harness.changes.names[-1] == machine
    observed = await harness.hv.observe(machine)
    assert observed.state is MachineState.CRASHED
    assert "SIGKILL" in observed.reason
    assert (observed.sockets, observed.memory_bytes, observed.nics) == (0, 0, ())


async def test_a_crashed_machine_refuses_hotplugs_and_restarts_until_forgotten(
    harness: Harness, machine: str
) -> None:
    with pytest.raises(HypervisorError):
        await harness.hv.set_memory(machine, 512 * MiB)
    with pytest.raises(HypervisorError, match="forget"):
        await harness.hv.start(harness.spec())
    await harness.hv.stop(machine, grace_period=0)  # ended already: a no-op
    await harness.hv.forget(machine)
    with pytest.raises(MachineNotFoundError):
        await harness.hv.observe(machine)
    assert await harness.hv.adopt() == []


# -- a second, short-lived machine ----------------------------------------------------------------


async def test_an_ignored_unplug_times_out_and_stays_pending_until_stop(harness: Harness) -> None:
    spec = harness.spec("short", max_sockets=0, max_memory_bytes=None, nics=())
    harness.ignore_unplugs()
    try:
        disk = DiskSpec("pending", harness.image("pending"))
        await harness.hv.start(spec)
        await harness.hv.attach_disk("short", disk)
        with pytest.raises(UnplugTimeoutError):
            await harness.hv.detach_disk("short", "pending", timeout=0.3)
        assert (await harness.hv.observe("short")).pending_unplugs == ("disk-pending",)
        with pytest.raises(HotplugError):  # not again while it is being unplugged
            await harness.hv.attach_disk("short", disk)
    finally:
        harness.ignore_unplugs(ignore=False)
    await harness.hv.stop("short", grace_period=0.5)
    observed = await harness.hv.observe("short")
    assert observed.state is MachineState.STOPPED
    await harness.hv.stop("short", grace_period=0.5)  # idempotent
    await harness.hv.forget("short")
    with pytest.raises(MachineNotFoundError):
        await harness.hv.observe("short")
