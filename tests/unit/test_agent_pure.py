"""The node agent's pure parts: hotplug operations, status from observation, placement predicates."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.agent.hotplug import OperationKind, operations
from vmplane.agent.hypervisor import (
    DiskSpec,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
)
from vmplane.agent.machine import HostPaths, machine_name, machine_spec, vmi_key_of
from vmplane.agent.scheduling import choose_node, fits, unschedulable_message
from vmplane.agent.status import failures_of, machine_status
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceSpec
from vmplane.rollout.observed import observed_from_status

GIB = 1024**3


def desired(**overrides: Any) -> MachineSpec:
    base: dict[str, Any] = {
        "name": "default_vm",
        "uuid": "u",
        "sockets": 1,
        "max_sockets": 4,
        "memory_bytes": GIB,
        "max_memory_bytes": 4 * GIB,
    }
    return MachineSpec(**{**base, **overrides})


def observed(**overrides: Any) -> ObservedMachine:
    base: dict[str, Any] = {
        "name": "default_vm",
        "state": MachineState.RUNNING,
        "sockets": 1,
        "vcpus": 1,
        "memory_bytes": GIB,
    }
    return ObservedMachine(**{**base, **overrides})


def kinds(spec: MachineSpec, have: ObservedMachine) -> list[OperationKind]:
    return [op.kind for op in operations(spec, have)]


def test_nothing_to_do_when_the_machine_has_what_the_spec_asks() -> None:
    assert operations(desired(), observed()) == []


def test_more_sockets_is_a_cpu_hotplug() -> None:
    [op] = operations(desired(sockets=3), observed())
    assert (op.kind, op.before, op.after) == (OperationKind.CPU, 1, 3)


def test_fewer_sockets_is_never_done_in_place() -> None:
    assert operations(desired(sockets=1), observed(sockets=2)) == []


def test_memory_difference_is_a_memory_resize_either_way() -> None:
    assert kinds(desired(memory_bytes=2 * GIB), observed()) == [OperationKind.MEMORY]
    assert kinds(desired(), observed(memory_bytes=2 * GIB)) == [OperationKind.MEMORY]


def test_only_hotpluggable_disks_are_attached_and_missing_ones_detached() -> None:
    spec = desired(disks=(DiskSpec("boot", "/b"), DiskSpec("data", "/d", hotpluggable=True)))
    assert kinds(spec, observed()) == [OperationKind.ATTACH_DISK]
    assert kinds(desired(), observed(disks=(ObservedDisk("data", "/d"),))) == [OperationKind.DETACH_DISK]


def test_nics_are_attached_detached_and_their_links_set() -> None:
    spec = desired(nics=(NicSpec("a", "52:54:00:00:00:01"), NicSpec("b", "52:54:00:00:00:02", link_up=False)))
    have = observed(
        nics=(ObservedNic("b", "52:54:00:00:00:02", True), ObservedNic("c", "52:54:00:00:00:03", True))
    )
    assert kinds(spec, have) == [OperationKind.ATTACH_NIC, OperationKind.LINK, OperationKind.DETACH_NIC]


def test_failed_fields_are_not_retried() -> None:
    assert operations(desired(sockets=2), observed(), skip={"domain.cpu.sockets"}) == []


def vmi(spec: dict[str, Any], status: dict[str, Any] | None = None) -> VirtualMachineInstance:
    return VirtualMachineInstance.model_validate(
        {"metadata": {"name": "vm", "namespace": "default", "uid": "uid-1"}, "spec": spec, "status": status}
    )


def test_machine_name_round_trips_to_the_vmi_key() -> None:
    assert vmi_key_of(machine_name("ns", "vm.a-b")) == ("ns", "vm.a-b")


def test_machine_spec_carries_topology_headroom_and_volume_paths(tmp_path: Any) -> None:
    spec = machine_spec(
        vmi(
            {
                "domain": {
                    "cpu": {"sockets": 2, "cores": 2, "maxSockets": 8},
                    "memory": {"guest": "1Gi", "maxGuest": "4Gi"},
                    "devices": {
                        "disks": [{"name": "data", "disk": {}}],
                        "interfaces": [{"name": "n", "bridge": {}, "state": "down"}],
                    },
                },
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "c", "hotpluggable": True}}
                ],
                "networks": [{"name": "n", "multus": {"networkName": "x"}}],
            }
        ),
        paths=HostPaths(tmp_path),
    )
    assert (spec.sockets, spec.cores, spec.max_sockets) == (2, 2, 8)
    assert (spec.memory_bytes, spec.max_memory_bytes) == (GIB, 4 * GIB)
    assert spec.disks[0].path == str(tmp_path / "volumes" / "default" / "claims" / "c.qcow2")
    assert spec.disks[0].hotpluggable
    assert spec.nics[0].link_up is False


def test_absent_interfaces_are_not_part_of_the_machine(tmp_path: Any) -> None:
    spec = machine_spec(
        vmi(
            {
                "domain": {"devices": {"interfaces": [{"name": "n", "bridge": {}, "state": "absent"}]}},
                "networks": [{"name": "n", "multus": {"networkName": "x"}}],
            }
        ),
        paths=HostPaths(tmp_path),
    )
    assert spec.nics == ()


def test_status_reports_what_was_observed_not_what_was_asked() -> None:
    current = vmi(
        {"domain": {"cpu": {"sockets": 3}, "memory": {"guest": "2Gi"}}},
        {"phase": "Running", "memory": {"guestAtBoot": "1Gi"}},
    )
    status = machine_status(current, observed(sockets=2, memory_bytes=GIB), failures={}, now="t")
    assert status.current_cpu_topology is not None
    assert status.current_cpu_topology.sockets == 2
    assert status.memory is not None
    assert str(status.memory.guest_current) == "1Gi"


def test_failures_are_written_as_the_planner_reads_them() -> None:
    current = vmi({"domain": {"cpu": {"sockets": 2}}}, {"phase": "Running"})
    failures = {
        "domain.cpu.sockets": "refused",
        "volumes[name=data]": "no slot",
        "domain.devices.interfaces[name=n]": "gone",
    }
    status = machine_status(current, observed(), failures=failures, now="t")
    assert failures_of(status) == failures
    assert set(observed_from_status(status, current.spec.to_wire()).failed) >= {
        "domain.cpu.sockets",
        "volumes[name=data]",
        "domain.devices.interfaces[name=n]",
    }


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        (MachineState.STARTING, "Scheduled"),
        (MachineState.RUNNING, "Running"),
        (MachineState.STOPPED, "Succeeded"),
        (MachineState.CRASHED, "Failed"),
    ],
)
def test_phase_follows_the_machine_state(state: MachineState, phase: str) -> None:
    status = machine_status(vmi({}, {"phase": "Scheduled"}), observed(state=state), failures={}, now="t")
    assert status.phase is not None
    assert status.phase.value == phase


NODE = {
    "metadata": {"name": "node01", "labels": {"zone": "a", "gpu": "2"}},
    "spec": {"taints": [{"key": "dedicated", "value": "vms", "effect": "NoSchedule"}]},
}
TOLERATED = [{"key": "dedicated", "operator": "Equal", "value": "vms", "effect": "NoSchedule"}]


def placement(**spec: Any) -> VirtualMachineInstanceSpec:
    return VirtualMachineInstanceSpec.model_validate({"tolerations": TOLERATED, **spec})


@pytest.mark.parametrize(
    ("spec", "fits_node"),
    [
        ({}, True),
        ({"nodeSelector": {"zone": "a"}}, True),
        ({"nodeSelector": {"zone": "b"}}, False),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}
                            ]
                        }
                    }
                }
            },
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["3"]}]}
                            ]
                        }
                    }
                }
            },
            False,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": ["node01"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            True,
        ),
        ({"tolerations": []}, False),
        ({"tolerations": [{"operator": "Exists"}]}, True),
    ],
    ids=[
        "no-constraints",
        "selector-match",
        "selector-miss",
        "affinity-notin",
        "affinity-gt-miss",
        "affinity-match-fields",
        "taint-not-tolerated",
        "tolerate-everything",
    ],
)
def test_placement_predicates_follow_kubernetes(spec: dict[str, Any], fits_node: bool) -> None:
    assert (fits(placement(**spec), NODE) == []) is fits_node


def test_unschedulable_message_counts_nodes_per_reason() -> None:
    spec = placement(nodeSelector={"zone": "b"})
    assert choose_node(spec, [NODE]) is None
    assert unschedulable_message(spec, [NODE]) == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
