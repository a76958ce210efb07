"""``agent.hotplug.operations``: the VMI spec (a MachineSpec) vs the observed machine. Table tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

from vmplane.agent.hotplug import (
    AGENT_OPERATIONS,
    AttachDisk,
    AttachNic,
    ChangeMedium,
    DetachDisk,
    DetachNic,
    Operation,
    SetLink,
    SetMemory,
    SetSockets,
    differing_fields,
    operations,
)
from vmplane.hypervisor.base import (
    DiskSpec,
    Hypervisor,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
)
from vmplane.rollout.fields import (
    CPU_SOCKETS,
    MEMORY_GUEST,
    REPORTED_BY_NODE_AGENT,
    LiveKind,
    family_of,
    interface_path,
    volume_path,
)

GiB = 1 << 30
ROOT = DiskSpec("root", "/v/root.qcow2")
DATA = DiskSpec("data", "/v/data.qcow2", hotpluggable=True)
DEFAULT = NicSpec("default", "02:00:00:00:00:01")
BLUE = NicSpec("blue", "02:00:00:00:00:02")
EMPTY_CD = DiskSpec("cd", "", bus="sata", cdrom=True, readonly=True)
ISO = replace(EMPTY_CD, path="/v/iso.qcow2", hotpluggable=True)
SCSI = DiskSpec("lun", "/v/lun.qcow2", bus="scsi", hotpluggable=True)

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
    "cpu-up": (want(sockets=3), have(), [(SetSockets, CPU_SOCKETS, "1", "3")]),
    # A decrease is not the agent's to judge: the planner never asks for one; the driver refuses it.
    "cpu-down": (want(sockets=1), have(sockets=2), [(SetSockets, CPU_SOCKETS, "2", "1")]),
    "memory-up": (
        want(memory_bytes=2 * GiB),
        have(),
        [(SetMemory, MEMORY_GUEST, "1Gi", "2Gi")],
    ),
    "memory-down": (
        want(memory_bytes=GiB),
        have(memory_bytes=3 * GiB),
        [(SetMemory, MEMORY_GUEST, "3Gi", "1Gi")],
    ),
    "disk-attach": (
        want(disks=(ROOT, DATA)),
        have(),
        [(AttachDisk, volume_path("data"), "absent", "/v/data.qcow2")],
    ),
    "disk-not-hotpluggable-is-never-attached": (
        want(disks=(ROOT, replace(DATA, hotpluggable=False))),
        have(),
        [],
    ),
    "disk-detach": (
        want(),
        have(disks=(*OBSERVED.disks, ObservedDisk("data", "/v/data.qcow2"))),
        [(DetachDisk, volume_path("data"), "/v/data.qcow2", "absent")],
    ),
    "disk-swap": (
        want(disks=(ROOT, replace(DATA, path="/v/other.qcow2"))),
        have(disks=(*OBSERVED.disks, ObservedDisk("data", "/v/data.qcow2"))),
        [
            (DetachDisk, volume_path("data"), "/v/data.qcow2", "absent"),
            (AttachDisk, volume_path("data"), "/v/data.qcow2", "/v/other.qcow2"),
        ],
    ),
    "cdrom-insert-changes-the-medium-of-the-plugged-drive": (
        want(disks=(ROOT, ISO)),
        have(disks=(*OBSERVED.disks, ObservedDisk("cd", "", cdrom=True))),
        [(ChangeMedium, volume_path("cd"), "absent", ISO.path)],
    ),
    "cdrom-media-change-is-one-operation-not-an-unplug": (
        want(disks=(ROOT, replace(ISO, path="/v/other.qcow2"))),
        have(disks=(*OBSERVED.disks, ObservedDisk("cd", ISO.path, cdrom=True))),
        [(ChangeMedium, volume_path("cd"), ISO.path, "/v/other.qcow2")],
    ),
    "cdrom-eject-leaves-the-drive-empty": (
        want(disks=(ROOT, EMPTY_CD)),
        have(disks=(*OBSERVED.disks, ObservedDisk("cd", ISO.path, cdrom=True))),
        [(ChangeMedium, volume_path("cd"), ISO.path, "absent")],
    ),
    "cdrom-with-its-medium-in-sync": (
        want(disks=(ROOT, ISO)),
        have(disks=(*OBSERVED.disks, ObservedDisk("cd", ISO.path, cdrom=True))),
        [],
    ),
    "scsi-disk-attach": (
        want(disks=(ROOT, SCSI)),
        have(),
        [(AttachDisk, volume_path("lun"), "absent", SCSI.path)],
    ),
    "boot-disk-path-is-not-compared": (want(disks=(replace(ROOT, path="/elsewhere"),)), have(), []),
    "nic-attach": (
        want(nics=(DEFAULT, BLUE)),
        have(),
        [(AttachNic, interface_path("blue"), "absent", BLUE.mac)],
    ),
    "nic-detach-absent-or-removed": (
        want(),
        have(nics=(*OBSERVED.nics, ObservedNic("blue", BLUE.mac, True))),
        [(DetachNic, interface_path("blue"), BLUE.mac, "absent")],
    ),
    "nic-link-down": (
        want(nics=(replace(DEFAULT, link_up=False),)),
        have(),
        [(SetLink, interface_path("default"), "up", "down")],
    ),
    "nic-link-up": (
        want(),
        have(nics=(ObservedNic("default", DEFAULT.mac, False),)),
        [(SetLink, interface_path("default"), "down", "up")],
    ),
    "unplugs-first-then-plugs-then-cpu-and-memory": (
        want(sockets=2, memory_bytes=2 * GiB, disks=(ROOT, DATA), nics=(BLUE,)),
        have(nics=(ObservedNic("default", DEFAULT.mac, True),)),
        [
            (DetachNic, interface_path("default"), DEFAULT.mac, "absent"),
            (AttachDisk, volume_path("data"), "absent", DATA.path),
            (AttachNic, interface_path("blue"), "absent", BLUE.mac),
            (SetSockets, CPU_SOCKETS, "1", "2"),
            (SetMemory, MEMORY_GUEST, "1Gi", "2Gi"),
        ],
    ),
}


@pytest.mark.parametrize(("desired", "observed", "expected"), CASES.values(), ids=CASES.keys())
def test_operations(desired: MachineSpec, observed: ObservedMachine, expected: list[tuple[Any, ...]]) -> None:
    ops = operations(desired, observed)
    assert [(type(op), op.path, op.before, op.after) for op in ops] == expected
    assert differing_fields(desired, observed) == {e[1] for e in expected}


def test_skipped_paths_are_left_alone() -> None:
    desired = want(sockets=3, memory_bytes=2 * GiB, nics=(DEFAULT, BLUE))
    ops = operations(desired, have(), skip={CPU_SOCKETS, interface_path("blue")})
    assert [op.path for op in ops] == [MEMORY_GUEST]


def test_operations_carry_exactly_what_the_driver_call_needs() -> None:
    desired = want(
        sockets=2, memory_bytes=2 * GiB, disks=(ROOT, DATA), nics=(replace(DEFAULT, link_up=False), BLUE)
    )
    by_kind: dict[type, Any] = {type(op): op for op in operations(desired, have())}
    assert by_kind[SetSockets].sockets == 2
    assert by_kind[SetMemory].memory_bytes == 2 * GiB
    assert by_kind[AttachDisk].disk == DATA
    assert by_kind[AttachNic].nic == BLUE
    link = by_kind[SetLink]
    assert (link.device, link.link_up) == ("default", False)


def test_an_eject_carries_the_empty_drive() -> None:
    observed = have(disks=(*OBSERVED.disks, ObservedDisk("cd", ISO.path, cdrom=True)))
    (op,) = operations(want(disks=(ROOT, EMPTY_CD)), observed)
    assert isinstance(op, ChangeMedium)
    assert op.disk.empty


def test_every_live_field_family_has_its_agent_operations() -> None:
    # Placement is the one family the agent has nothing to do for: it binds the next start.
    assert set(AGENT_OPERATIONS) == set(LiveKind)
    assert {kind for kind, ops in AGENT_OPERATIONS.items() if not ops} == {LiveKind.PLACEMENT}
    for kind, ops in AGENT_OPERATIONS.items():
        assert all(op.kind is kind for op in ops)
    declared = {op for ops in AGENT_OPERATIONS.values() for op in ops}
    assert declared == set(get_args(Operation))


def test_the_families_the_agent_reports_are_those_it_has_operations_for() -> None:
    # The VM controller leaves these to the agent's HotplugApplied/HotplugFailed events.
    assert {kind for kind, ops in AGENT_OPERATIONS.items() if ops} == REPORTED_BY_NODE_AGENT


def test_every_operation_serves_a_path_of_its_own_family() -> None:
    desired = want(
        sockets=2, memory_bytes=2 * GiB, disks=(ROOT, DATA), nics=(replace(DEFAULT, link_up=False), BLUE)
    )
    observed = have(disks=(*OBSERVED.disks, ObservedDisk("old", "/old.qcow2")))
    for op in operations(desired, observed):
        family = family_of(op.path)
        assert family is not None, op
        assert family.kind is op.kind, op


def test_each_operation_is_named_after_its_hypervisor_method() -> None:
    for op in get_args(Operation):
        assert callable(getattr(Hypervisor, op.name)), op
