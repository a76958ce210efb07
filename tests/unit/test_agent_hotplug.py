"""``agent.hotplug.operations``: the VMI spec (a MachineSpec) vs the observed machine. Table tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vmplane.agent.hotplug import (
    CPU_FIELD,
    MEMORY_FIELD,
    OperationKind,
    differing_fields,
    interface_field,
    named,
    operations,
    volume_field,
)
from vmplane.agent.hypervisor import (
    DiskSpec,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
)

GiB = 1 << 30
ROOT = DiskSpec("root", "/v/root.qcow2")
DATA = DiskSpec("data", "/v/data.qcow2", hotpluggable=True)
DEFAULT = NicSpec("default", "02:00:00:00:00:01")
BLUE = NicSpec("blue", "02:00:00:00:00:02")

DESIRED = MachineSpec(
    name="ns_vm", uuid="u", sockets=1, max_sockets=4, memory_bytes=GiB, disks=(ROOT,), nics=(DEFAULT,)
)
OBSERVED = ObservedMachine(
    name="ns_vm",
    state=MachineState.RUNNING,
    sockets=1,
    vcpus=1,
    memory_bytes=GiB,
    disks=(ObservedDisk("root", "/v/root.qcow2"),),
    nics=(ObservedNic("default", "02:00:00:00:00:01", True),),
)


def want(**changes: Any) -> MachineSpec:
    return replace(DESIRED, **changes)


def have(**changes: Any) -> ObservedMachine:
    return replace(OBSERVED, **changes)


CASES = {
    "in-sync": (want(), have(), []),
    "cpu-up": (want(sockets=3), have(), [(OperationKind.SET_SOCKETS, CPU_FIELD, "1", "3")]),
    # A decrease is not the agent's to judge: the planner never asks for one; the driver refuses it.
    "cpu-down": (want(sockets=1), have(sockets=2), [(OperationKind.SET_SOCKETS, CPU_FIELD, "2", "1")]),
    "memory-up": (
        want(memory_bytes=2 * GiB),
        have(),
        [(OperationKind.SET_MEMORY, MEMORY_FIELD, "1Gi", "2Gi")],
    ),
    "memory-down": (
        want(memory_bytes=GiB),
        have(memory_bytes=3 * GiB),
        [(OperationKind.SET_MEMORY, MEMORY_FIELD, "3Gi", "1Gi")],
    ),
    "disk-attach": (
        want(disks=(ROOT, DATA)),
        have(),
        [(OperationKind.ATTACH_DISK, volume_field("data"), "absent", "/v/data.qcow2")],
    ),
    "disk-not-hotpluggable-is-never-attached": (
        want(disks=(ROOT, replace(DATA, hotpluggable=False))),
        have(),
        [],
    ),
    "disk-detach": (
        want(),
        have(disks=(*OBSERVED.disks, ObservedDisk("data", "/v/data.qcow2"))),
        [(OperationKind.DETACH_DISK, volume_field("data"), "/v/data.qcow2", "absent")],
    ),
    "disk-swap": (
        want(disks=(ROOT, replace(DATA, path="/v/other.qcow2"))),
        have(disks=(*OBSERVED.disks, ObservedDisk("data", "/v/data.qcow2"))),
        [
            (OperationKind.DETACH_DISK, volume_field("data"), "/v/data.qcow2", "absent"),
            (OperationKind.ATTACH_DISK, volume_field("data"), "/v/data.qcow2", "/v/other.qcow2"),
        ],
    ),
    "boot-disk-path-is-not-compared": (want(disks=(replace(ROOT, path="/elsewhere"),)), have(), []),
    "nic-attach": (
        want(nics=(DEFAULT, BLUE)),
        have(),
        [(OperationKind.ATTACH_NIC, interface_field("blue"), "absent", BLUE.mac)],
    ),
    "nic-detach-absent-or-removed": (
        want(),
        have(nics=(*OBSERVED.nics, ObservedNic("blue", BLUE.mac, True))),
        [(OperationKind.DETACH_NIC, interface_field("blue"), BLUE.mac, "absent")],
    ),
    "nic-link-down": (
        want(nics=(replace(DEFAULT, link_up=False),)),
        have(),
        [(OperationKind.SET_LINK, interface_field("default"), "up", "down")],
    ),
    "nic-link-up": (
        want(),
        have(nics=(ObservedNic("default", DEFAULT.mac, False),)),
        [(OperationKind.SET_LINK, interface_field("default"), "down", "up")],
    ),
    "unplugs-first-then-plugs-then-cpu-and-memory": (
        want(sockets=2, memory_bytes=2 * GiB, disks=(ROOT, DATA), nics=(BLUE,)),
        have(nics=(ObservedNic("default", DEFAULT.mac, True),)),
        [
            (OperationKind.DETACH_NIC, interface_field("default"), DEFAULT.mac, "absent"),
            (OperationKind.ATTACH_DISK, volume_field("data"), "absent", DATA.path),
            (OperationKind.ATTACH_NIC, interface_field("blue"), "absent", BLUE.mac),
            (OperationKind.SET_SOCKETS, CPU_FIELD, "1", "2"),
            (OperationKind.SET_MEMORY, MEMORY_FIELD, "1Gi", "2Gi"),
        ],
    ),
}


@pytest.mark.parametrize(("desired", "observed", "expected"), CASES.values(), ids=CASES.keys())
def test_operations(desired: MachineSpec, observed: ObservedMachine, expected: list[tuple[Any, ...]]) -> None:
    ops = operations(desired, observed)
    assert [(op.kind, op.field, op.before, op.after) for op in ops] == expected
    assert differing_fields(desired, observed) == {e[1] for e in expected}


def test_skipped_paths_are_left_alone() -> None:
    desired = want(sockets=3, memory_bytes=2 * GiB, nics=(DEFAULT, BLUE))
    ops = operations(desired, have(), skip={CPU_FIELD, interface_field("blue")})
    assert [op.field for op in ops] == [MEMORY_FIELD]


def test_operations_carry_exactly_what_the_driver_call_needs() -> None:
    desired = want(
        sockets=2, memory_bytes=2 * GiB, disks=(ROOT, DATA), nics=(replace(DEFAULT, link_up=False), BLUE)
    )
    by_kind = {op.kind: op for op in operations(desired, have())}
    assert by_kind[OperationKind.SET_SOCKETS].sockets == 2
    assert by_kind[OperationKind.SET_MEMORY].memory_bytes == 2 * GiB
    assert by_kind[OperationKind.ATTACH_DISK].disk == DATA
    assert by_kind[OperationKind.ATTACH_NIC].nic == BLUE
    link = by_kind[OperationKind.SET_LINK]
    assert (link.device, link.link_up) == ("default", False)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (volume_field("data"), ("volume", "data")),
        (interface_field("blue"), ("interface", "blue")),
        (CPU_FIELD, None),
        (MEMORY_FIELD, None),
    ],
)
def test_named(field: str, expected: tuple[str, str] | None) -> None:
    assert named(field) == expected
