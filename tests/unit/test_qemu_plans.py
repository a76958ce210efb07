"""Hotplug decisions of the QEMU driver, fed with QMP replies recorded from QEMU 7.2."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.hypervisor.qemu import naming
from vmplane.hypervisor.qemu.plans import (
    CpuSlot,
    Dimm,
    MemoryPlan,
    PlanError,
    cpu_slots,
    cpu_slots_to_plug,
    dimms,
    free_root_ports,
    next_dimm_index,
    plan_memory,
)

MiB = 1 << 20


def slot(socket: int, *, present: bool, core: int = 0) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "props": {"core-id": core, "thread-id": 0, "node-id": 0, "socket-id": socket},
        "vcpus-count": 1,
        "type": "qemu64-x86_64-cpu",
    }
    if present:
        entry["qom-path"] = f"/machine/unattached/device[{socket}]"
    return entry


# `-smp 1,sockets=4,maxcpus=4`: QEMU lists the free slots first, highest socket first.
FOUR_SOCKETS = [slot(3, present=False), slot(2, present=False), slot(1, present=False), slot(0, present=True)]


@pytest.mark.parametrize(
    ("reply", "sockets", "plugged"),
    [
        pytest.param(FOUR_SOCKETS, 1, [], id="already-there"),
        pytest.param(FOUR_SOCKETS, 2, [1], id="one-more"),
        pytest.param(FOUR_SOCKETS, 4, [1, 2, 3], id="all-in-order"),
        pytest.param(
            [slot(2, present=False), slot(1, present=True), slot(0, present=True)],
            3,
            [2],
            id="after-earlier-plug",
        ),
    ],
)
def test_cpu_slots_to_plug(reply: list[dict[str, Any]], sockets: int, plugged: list[int]) -> None:
    assert [s.socket for s in cpu_slots_to_plug(cpu_slots(reply), sockets)] == plugged


def test_every_core_of_a_new_socket_is_plugged() -> None:
    reply = [slot(s, core=c, present=s == 0) for s in (1, 0) for c in (1, 0)]
    plug = cpu_slots_to_plug(cpu_slots(reply), 2)
    assert [(s.socket, s.props["core-id"]) for s in plug] == [(1, 0), (1, 1)]
    assert naming.cpu_id(dict(plug[1].props)) == "cpu-s1-c1-t0"


@pytest.mark.parametrize(
    ("sockets", "message"),
    [
        pytest.param(0, "cannot remove vCPUs live", id="decrease"),
        pytest.param(5, "room for 4", id="above-max"),
    ],
)
def test_cpu_requests_the_machine_cannot_meet(sockets: int, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        cpu_slots_to_plug(cpu_slots(FOUR_SOCKETS), sockets)


def test_present_slots_are_recognised_by_their_qom_path() -> None:
    assert cpu_slots(FOUR_SOCKETS)[-1] == CpuSlot("qemu64-x86_64-cpu", FOUR_SOCKETS[-1]["props"], True)


def memory_device(dimm_id: str, size: int, *, hotplugged: bool = True, kind: str = "dimm") -> dict[str, Any]:
    data = {"id": dimm_id, "size": size, "hotplugged": hotplugged, "hotpluggable": True, "slot": 0}
    return {"type": kind, "data": data}


def test_dimms_are_vmplane_hotplugged_ones_in_plug_order() -> None:
    reply = [
        memory_device("dimm10", 128 * MiB),
        memory_device("dimm2", 256 * MiB),
        memory_device("cold", 128 * MiB, hotplugged=False),
        memory_device("vmem0", 128 * MiB, kind="virtio-mem"),
        memory_device("other", 128 * MiB),
    ]
    assert dimms(reply) == [Dimm("dimm2", 256 * MiB, 2), Dimm("dimm10", 128 * MiB, 10)]


@pytest.mark.parametrize(
    ("present", "pending", "expected"),
    [
        pytest.param([], [], 0, id="first"),
        pytest.param([Dimm("dimm0", MiB, 0), Dimm("dimm3", MiB, 3)], [], 4, id="after-highest"),
        pytest.param([Dimm("dimm0", MiB, 0)], ["dimm5", "disk-a"], 6, id="pending-ids-stay-taken"),
    ],
)
def test_next_dimm_index(present: list[Dimm], pending: list[str], expected: int) -> None:
    assert next_dimm_index(present, pending) == expected


B = 256 * MiB  # boot size in these tables


@pytest.mark.parametrize(
    ("plugged", "target", "free", "plan"),
    [
        pytest.param([], B, 16, MemoryPlan(), id="unchanged"),
        pytest.param([], B + 256 * MiB, 16, MemoryPlan(add=256 * MiB), id="grow"),
        pytest.param(
            [Dimm("dimm0", 256 * MiB, 0)], B + 512 * MiB, 15, MemoryPlan(add=256 * MiB), id="grow-more"
        ),
        pytest.param(
            [Dimm("dimm0", 256 * MiB, 0), Dimm("dimm1", 128 * MiB, 1)],
            B + 256 * MiB,
            14,
            MemoryPlan(remove=("dimm1",)),
            id="shrink-newest-first",
        ),
        pytest.param(
            [Dimm("dimm0", 256 * MiB, 0), Dimm("dimm1", 128 * MiB, 1)],
            B,
            14,
            MemoryPlan(("dimm1", "dimm0")),
            id="to-boot",
        ),
        pytest.param(
            [Dimm("dimm0", 384 * MiB, 0)],
            B + 128 * MiB,
            15,
            MemoryPlan(remove=("dimm0",), add=128 * MiB),
            id="overshoot-then-add",
        ),
        pytest.param(
            [Dimm("dimm0", 128 * MiB, 0)],
            B + 256 * MiB,
            0,
            MemoryPlan(remove=(), add=128 * MiB),
            id="last-slot",
        ),
    ],
)
def test_plan_memory_reaches_the_target_exactly(
    plugged: list[Dimm], target: int, free: int, plan: MemoryPlan
) -> None:
    got = plan_memory(boot=B, plugged=plugged, target=target, maximum=4 << 30, free_slots=free + 1)
    assert got == plan
    kept = sum(d.size for d in plugged if d.id not in got.remove)
    assert B + kept + got.add == target


@pytest.mark.parametrize(
    ("target", "free", "message"),
    [
        pytest.param(B - 128 * MiB, 16, "below the boot size", id="below-boot"),
        pytest.param((4 << 30) + 128 * MiB, 16, "above the maximum", id="above-max"),
        pytest.param(B + 100 * MiB, 16, "multiples of 128 MiB", id="unaligned"),
        pytest.param(B + 128 * MiB, 0, "no free memory slot", id="no-slot"),
    ],
)
def test_plan_memory_refuses(target: int, free: int, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_memory(boot=B, plugged=[], target=target, maximum=4 << 30, free_slots=free)


def root_port(qdev_id: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {
        "qdev_id": qdev_id,
        "class_info": {"class": 1540, "desc": "PCI bridge"},
        "pci_bridge": {"bus": {"number": 0}, "devices": list(children)},
    }


NIC = {"qdev_id": "nic-a", "class_info": {"class": 512, "desc": "Ethernet controller"}}
HOST_BRIDGE = {"qdev_id": "", "class_info": {"class": 1536, "desc": "Host bridge"}}


@pytest.mark.parametrize(
    ("devices", "free"),
    [
        pytest.param([HOST_BRIDGE], [], id="no-ports"),
        pytest.param([HOST_BRIDGE, root_port("rp0", NIC), root_port("rp1")], ["rp1"], id="occupied-skipped"),
        pytest.param(
            [root_port("rp10"), root_port("rp2"), root_port("rp1")],
            ["rp1", "rp2", "rp10"],
            id="numeric-order",
        ),
        pytest.param([root_port("other"), root_port("rpx"), root_port("rp3")], ["rp3"], id="not-ours"),
        pytest.param([root_port("rp0", root_port("rp1"))], ["rp1"], id="nested-bridges-walked"),
    ],
)
def test_free_root_ports(devices: list[dict[str, Any]], free: list[str]) -> None:
    assert free_root_ports([{"bus": 0, "devices": devices}]) == free
