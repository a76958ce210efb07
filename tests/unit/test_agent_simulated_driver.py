"""``SimulatedHypervisor`` keeps the driver contract an agent relies on (the QEMU driver's)."""

from __future__ import annotations

import asyncio

import pytest

from vmplane.hypervisor.base import (
    DiskSpec,
    HotplugError,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    NicSpec,
    UnplugTimeoutError,
)
from vmplane.hypervisor.simulated import SimulatedHost, SimulatedHypervisor
from vmplane.testing.clock import run_in_virtual_time

GiB = 1 << 30
SPEC = MachineSpec(
    name="ns_vm",
    uuid="u",
    sockets=1,
    max_sockets=4,
    memory_bytes=GiB,
    max_memory_bytes=4 * GiB,
    disks=(DiskSpec("root", "/root.qcow2"),),
    nics=(NicSpec("default", "02:00:00:00:00:01"),),
    spare_root_ports=1,
)
DATA = DiskSpec("data", "/data.qcow2", hotpluggable=True)


class Changes:
    """An ``on_change`` that counts, and can be awaited."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.event.set()


async def running(
    latency: float = 0.0, host: SimulatedHost | None = None
) -> tuple[SimulatedHypervisor, Changes]:
    changes = Changes()
    hv = SimulatedHypervisor(on_change=changes, host=host, latency=latency)
    await hv.start(SPEC)
    return hv, changes


def test_a_boot_passes_through_starting_for_latency_seconds_and_tells_on_change() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hv, changes = await running(latency=2.0)
        started = loop.time()
        assert (await hv.observe("ns_vm")).state is MachineState.STARTING
        changes.event.clear()
        await changes.event.wait()
        assert loop.time() - started == pytest.approx(2.0, abs=0.01)
        observed = await hv.observe("ns_vm")
        assert (observed.state, observed.sockets, observed.vcpus, observed.memory_bytes) == (
            MachineState.RUNNING,
            1,
            1,
            GiB,
        )
        assert ([d.name for d in observed.disks], [n.name for n in observed.nics]) == (["root"], ["default"])
        await hv.start(SPEC)  # idempotent while it runs
        assert hv.boot_of("ns_vm") == 1

    run_in_virtual_time(scenario())


async def test_hotplug_limits_are_the_qemu_drivers() -> None:
    hv, _ = await running()
    await hv.set_sockets("ns_vm", 3)
    with pytest.raises(HotplugError, match="unplug is not supported"):
        await hv.set_sockets("ns_vm", 2)
    with pytest.raises(HotplugError, match="exceed the maximum"):
        await hv.set_sockets("ns_vm", 5)
    with pytest.raises(HotplugError):
        await hv.set_memory("ns_vm", 5 * GiB)
    with pytest.raises(HotplugError):
        await hv.set_memory("ns_vm", GiB // 2)
    await hv.set_memory("ns_vm", 2 * GiB)
    with pytest.raises(HotplugError, match="CD-ROM drives cannot be hot-plugged"):
        await hv.attach_disk("ns_vm", DiskSpec("cd", "/cd.iso", bus="sata", cdrom=True))
    await hv.attach_disk("ns_vm", DATA)
    await hv.attach_disk("ns_vm", DATA)  # present already: a no-op
    with pytest.raises(HotplugError, match="no free PCIe root port"):
        await hv.attach_nic("ns_vm", NicSpec("blue", "02:00:00:00:00:02"))
    observed = await hv.observe("ns_vm")
    assert (observed.sockets, observed.memory_bytes) == (3, 2 * GiB)
    assert [d.name for d in observed.disks] == ["data", "root"]


async def test_refused_hotplugs_and_links() -> None:
    hv, _ = await running()
    hv.refuse_hotplug("cpu")
    with pytest.raises(HotplugError, match="injected"):
        await hv.set_sockets("ns_vm", 2)
    hv.refuse_hotplug("cpu", refuse=False)
    await hv.set_sockets("ns_vm", 2)
    await hv.set_link("ns_vm", "default", up=False)
    assert [(n.name, n.link_up) for n in (await hv.observe("ns_vm")).nics] == [("default", False)]
    with pytest.raises(HypervisorError, match="no such device"):
        await hv.set_link("ns_vm", "nope", up=True)


async def test_an_ignored_unplug_stays_pending_and_times_out_until_the_guest_lets_go() -> None:
    hv, _ = await running()
    await hv.attach_disk("ns_vm", DATA)
    hv.never_ack_unplug()
    with pytest.raises(UnplugTimeoutError, match="did not release"):
        await hv.detach_disk("ns_vm", "data", timeout=0.05)
    observed = await hv.observe("ns_vm")
    assert observed.pending_unplugs == ("disk-data",)
    assert [d.name for d in observed.disks] == ["data", "root"]
    with pytest.raises(HotplugError, match="still being unplugged"):
        await hv.attach_disk("ns_vm", DATA)
    hv.ack_unplugs("ns_vm")
    observed = await hv.observe("ns_vm")
    assert (observed.pending_unplugs, [d.name for d in observed.disks]) == ((), ["root"])


async def test_a_memory_decrease_is_an_unplug_too() -> None:
    hv = SimulatedHypervisor(on_change=Changes(), unplug_timeout=0.05)
    await hv.start(SPEC)
    await hv.set_memory("ns_vm", 2 * GiB)
    hv.never_ack_unplug()
    with pytest.raises(UnplugTimeoutError, match="memory"):
        await hv.set_memory("ns_vm", GiB)
    assert (await hv.observe("ns_vm")).memory_bytes == 2 * GiB


async def test_death_power_off_and_stop() -> None:
    hv, _ = await running()
    hv.kill("ns_vm")
    observed = await hv.observe("ns_vm")
    assert (observed.state, observed.reason, observed.sockets) == (
        MachineState.CRASHED,
        "QEMU was killed by SIGKILL",
        0,
    )
    with pytest.raises(HypervisorError, match="not running"):
        await hv.set_sockets("ns_vm", 2)
    with pytest.raises(HypervisorError, match="forget it"):
        await hv.start(SPEC)
    await hv.forget("ns_vm")
    with pytest.raises(MachineNotFoundError):
        await hv.observe("ns_vm")
    await hv.start(SPEC)
    hv.power_off("ns_vm")
    assert (await hv.observe("ns_vm")).state is MachineState.STOPPED
    await hv.forget("ns_vm")
    await hv.start(SPEC)
    with pytest.raises(HypervisorError, match="stop it"):
        await hv.forget("ns_vm")


def test_a_guest_ignoring_powerdown_is_killed_after_the_grace_period() -> None:
    async def scenario() -> tuple[float, str]:
        loop = asyncio.get_running_loop()
        hv, _ = await running()
        hv.ignore_powerdown("ns_vm")
        started = loop.time()
        await hv.stop("ns_vm", grace_period=30)
        return loop.time() - started, (await hv.observe("ns_vm")).reason

    assert run_in_virtual_time(scenario()) == (
        pytest.approx(30, abs=0.01),
        "killed after the 30s grace period",
    )


async def test_a_new_driver_on_the_same_host_must_adopt_before_it_may_touch_a_machine() -> None:
    hv, _ = await running(latency=0.05)
    await hv.close()  # a boot under way completes without the driver
    changes = Changes()
    second = SimulatedHypervisor(on_change=changes, host=hv.host)
    with pytest.raises(MachineNotFoundError):
        await second.observe("ns_vm")
    with pytest.raises(HypervisorError, match="adopt"):
        await second.start(SPEC)
    assert await second.adopt() == ["ns_vm"]
    assert (await second.observe("ns_vm")).state is MachineState.RUNNING
    second.kill("ns_vm")
    assert changes.names == ["ns_vm"]  # the closed driver hears nothing any more
    assert second.boot_of("ns_vm") == 1


async def test_pause_and_resume_show_in_what_the_driver_observes() -> None:
    hv, _ = await running()
    await hv.pause(SPEC.name)
    paused = await hv.observe(SPEC.name)
    assert (paused.state, paused.paused) == (MachineState.RUNNING, True)
    await hv.resume(SPEC.name)
    assert not (await hv.observe(SPEC.name)).paused


async def test_reset_reboots_the_guest_inside_the_same_machine_and_keeps_a_pause() -> None:
    hv, _ = await running()
    boot = hv.boot_of(SPEC.name)
    await hv.pause(SPEC.name)
    await hv.reset(SPEC.name)
    assert (hv.boot_of(SPEC.name), hv.reboots_of(SPEC.name)) == (boot, 1)
    assert (await hv.observe(SPEC.name)).paused


async def test_a_paused_guest_cannot_soft_reboot_itself() -> None:
    hv, _ = await running()
    await hv.pause(SPEC.name)
    with pytest.raises(HypervisorError, match="paused"):
        await hv.soft_reboot(SPEC.name)
    await hv.resume(SPEC.name)
    await hv.soft_reboot(SPEC.name)
    assert hv.reboots_of(SPEC.name) == 1
