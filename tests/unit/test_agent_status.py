"""``agent.status``: a VMI status from what was observed, and its round trip through the planner's reader."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vmplane.agent.status import attached_to_node, machine_status, phase_status
from vmplane.api.meta import Condition
from vmplane.api.migratable import LIVE_MIGRATABLE
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import (
    CPUTopology,
    MemoryStatus,
    VirtualMachineInstance,
    VirtualMachineInstanceStatus,
    VMIInterfaceStatus,
    VMIPhase,
)
from vmplane.hypervisor.base import (
    DiskSpec,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
)
from vmplane.hypervisor.guest_info import GuestInterface
from vmplane.rollout.failures import failed_hotplugs
from vmplane.rollout.fields import CPU_SOCKETS, MEMORY_GUEST, interface_path, volume_path
from vmplane.rollout.observed import observed_from_status
from vmplane.testing.builders import container_disk, disk, interface, network, pvc, vm_spec

GiB = 1 << 30
NOW = "2026-11-28T10:00:00Z"
LATER = "2026-11-28T10:05:00Z"
DESIRED = MachineSpec(
    name="ns_vm",
    uuid="u",
    sockets=1,
    max_sockets=4,
    memory_bytes=GiB,
    disks=(DiskSpec("root", "/root.qcow2"),),
    nics=(NicSpec("default", "02:00:00:00:00:01"),),
)
OBSERVED = ObservedMachine(
    name="ns_vm",
    state=MachineState.RUNNING,
    sockets=1,
    vcpus=1,
    memory_bytes=GiB,
    disks=(ObservedDisk("root", "/root.qcow2"),),
    nics=(ObservedNic("default", "02:00:00:00:00:01", True),),
)


def vmi(
    *, phase: VMIPhase = VMIPhase.SCHEDULED, guest: str = "1Gi", conditions: list[Condition] | None = None
) -> VirtualMachineInstance:
    spec = vm_spec(
        sockets=1,
        max_sockets=4,
        guest=guest,
        max_guest="4Gi",
        disks=[disk("root"), disk("data")],
        volumes=[container_disk("root"), pvc("data", hotpluggable=True)],
        interfaces=[interface("default"), interface("blue")],
        networks=[network("default"), network("blue", nad="blue")],
    )
    boot = Quantity.parse("1Gi")
    status = VirtualMachineInstanceStatus(
        phase=phase,
        node_name="node01",
        memory=MemoryStatus(guest_at_boot=boot, guest_current=boot, guest_requested=boot),
        conditions=conditions,
        virtual_machine_revision_name="revision-start-vm-x-1",
    )
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "vm", "namespace": "ns", "uid": "u"},
            "spec": spec.to_wire(),
            "status": status.to_wire(),
        }
    )


def conditions(status: VirtualMachineInstanceStatus) -> dict[str, tuple[str, str | None, str | None]]:
    # LiveMigratable follows the spec, not the machine: its tests are in test_migratable.
    return {
        c.type: (c.status, c.reason, c.message) for c in status.conditions or () if c.type != LIVE_MIGRATABLE
    }


def derive(
    observed: ObservedMachine = OBSERVED,
    desired: MachineSpec | None = DESIRED,
    failures: dict[str, str] | None = None,
    **vmi_args: Any,
) -> VirtualMachineInstanceStatus:
    return machine_status(vmi(**vmi_args), observed, desired=desired, failures=failures or {}, now=NOW)


def test_a_running_machine_in_sync_is_running_and_ready() -> None:
    status = derive()
    assert status.phase is VMIPhase.RUNNING
    assert conditions(status) == {"Ready": ("True", None, None)}
    assert status.current_cpu_topology == CPUTopology(sockets=1, cores=1, threads=1)
    assert [(v.name, v.phase) for v in status.volume_status or ()] == [("root", "Ready")]
    assert [(i.name, i.link_state, i.info_source) for i in status.interfaces or ()] == [
        ("default", "up", "domain")
    ]
    assert status.phase_transition_timestamps == [{"phase": "Running", "phaseTransitionTimestamp": NOW}]
    assert status.node_name == "node01"
    assert status.virtual_machine_revision_name == "revision-start-vm-x-1"


def test_a_starting_machine_stays_scheduled() -> None:
    status = derive(replace(OBSERVED, state=MachineState.STARTING))
    assert status.phase is VMIPhase.SCHEDULED
    assert conditions(status)["Ready"][0] == "False"
    assert status.phase_transition_timestamps is None


def test_hotplugs_in_flight_are_true_conditions_and_the_status_keeps_what_the_guest_has() -> None:
    status = derive(desired=replace(DESIRED, sockets=3, memory_bytes=2 * GiB), guest="2Gi")
    assert conditions(status)["HotVCPUChange"] == ("True", None, None)
    assert conditions(status)["HotMemoryChange"] == ("True", None, None)
    assert status.current_cpu_topology == CPUTopology(sockets=1, cores=1, threads=1)
    assert status.memory is not None
    assert (str(status.memory.guest_current), str(status.memory.guest_requested)) == ("1Gi", "1Gi")


def test_guest_requested_follows_the_spec_once_the_guest_has_it() -> None:
    status = derive(
        observed=replace(OBSERVED, memory_bytes=2 * GiB),
        desired=replace(DESIRED, memory_bytes=2 * GiB),
        guest="2Gi",
    )
    assert status.memory is not None
    assert (
        str(status.memory.guest_at_boot),
        str(status.memory.guest_current),
        str(status.memory.guest_requested),
    ) == (
        "1Gi",
        "2Gi",
        "2Gi",
    )
    assert "HotMemoryChange" not in conditions(status)


def test_volumes_being_plugged_or_unplugged() -> None:
    desired = replace(DESIRED, disks=(*DESIRED.disks, DiskSpec("data", "/data.qcow2", hotpluggable=True)))
    assert [(v.name, v.phase) for v in derive(desired=desired).volume_status or ()] == [
        ("root", "Ready"),
        ("data", "Pending"),
    ]
    leaving = replace(OBSERVED, disks=(*OBSERVED.disks, ObservedDisk("old", "/old.qcow2")))
    assert [(v.name, v.phase) for v in derive(leaving).volume_status or ()] == [
        ("root", "Ready"),
        ("old", "Detaching"),
    ]


FAILURES = {
    CPU_SOCKETS: "cpu refused",
    MEMORY_GUEST: "memory refused",
    volume_path("data"): "disk refused",
    interface_path("blue"): "nic refused",
}
FAILING_SPEC = replace(
    DESIRED,
    sockets=2,
    memory_bytes=2 * GiB,
    disks=(*DESIRED.disks, DiskSpec("data", "/data.qcow2", hotpluggable=True)),
    nics=(*DESIRED.nics, NicSpec("blue", "02:00:00:00:00:02")),
)


def test_failures_are_written_as_the_planner_reads_them() -> None:
    status = derive(desired=FAILING_SPEC, failures=FAILURES)
    assert conditions(status) == {
        "Ready": ("True", None, None),
        "HotVCPUChange": ("False", "HotplugFailed", "cpu refused"),
        "HotMemoryChange": ("False", "HotplugFailed", "memory refused"),
        "HotInterfaceChange": ("False", "blue", "nic refused"),
    }
    data = next(v for v in status.volume_status or () if v.name == "data")
    assert (data.phase, data.reason, data.message) == ("Failed", "HotplugFailed", "disk refused")
    assert failed_hotplugs(status) == FAILURES
    planner = observed_from_status(status, vmi().spec.to_wire()).failed
    assert planner["domain.cpu.sockets"].observed == 1
    assert planner["domain.memory.guest"].observed == "1Gi"
    assert set(planner) == {
        "domain.cpu.sockets",
        "domain.memory.guest",
        "volumes[name=data]",
        "domain.devices.disks[name=data]",
        "domain.devices.interfaces[name=blue]",
    }


def test_two_failed_interfaces_name_the_first_and_describe_both() -> None:
    desired = replace(DESIRED, nics=(*DESIRED.nics, NicSpec("blue", "b"), NicSpec("red", "r")))
    failures = {interface_path("red"): "no port", interface_path("blue"): "refused"}
    status = derive(desired=desired, failures=failures)
    assert conditions(status)["HotInterfaceChange"] == ("False", "blue", "blue: refused; red: no port")
    # The typed record keeps both, where one condition could name only one.
    assert failed_hotplugs(status) == failures


def test_a_failure_clears_once_the_spec_and_the_guest_agree_again() -> None:
    status = derive(failures=FAILURES)
    assert set(conditions(status)) == {"Ready"}
    assert failed_hotplugs(status) == {}


@pytest.mark.parametrize(
    ("state", "phase", "reason"),
    [
        (MachineState.CRASHED, VMIPhase.FAILED, "QEMU was killed by SIGKILL"),
        (MachineState.STOPPED, VMIPhase.SUCCEEDED, "guest shut down"),
    ],
)
def test_an_ended_machine_ends_the_vmi(state: MachineState, phase: VMIPhase, reason: str) -> None:
    running = derive(desired=replace(DESIRED, sockets=2))
    before = vmi(phase=VMIPhase.RUNNING).model_copy(update={"status": running})
    ended = machine_status(
        before,
        ObservedMachine(name="ns_vm", state=state, reason=reason),
        desired=DESIRED,
        failures={},
        now=LATER,
    )
    assert (ended.phase, ended.reason) == (phase, reason)
    assert conditions(ended) == {"Ready": ("False", "GuestNotRunning", None)}
    assert ended.current_cpu_topology == running.current_cpu_topology  # the last observed, kept
    assert ended.phase_transition_timestamps is not None
    assert ended.phase_transition_timestamps[-1] == {"phase": phase.value, "phaseTransitionTimestamp": LATER}


def test_a_final_phase_is_final() -> None:
    failed = vmi(phase=VMIPhase.FAILED)
    assert machine_status(failed, OBSERVED, desired=DESIRED, failures={}, now=NOW) == failed.status


def test_other_conditions_and_transition_times_are_kept() -> None:
    scheduled = Condition(type="PodScheduled", status="True", last_transition_time="2026-11-28T09:00:00Z")
    first = derive(conditions=[scheduled])
    again = machine_status(
        vmi(conditions=first.conditions).model_copy(update={"status": first}),
        OBSERVED,
        desired=DESIRED,
        failures={},
        now=LATER,
    )
    assert again == first
    assert conditions(first)["PodScheduled"] == ("True", None, None)
    ready = next(c for c in first.conditions or () if c.type == "Ready")
    assert ready.last_transition_time == NOW


def test_without_a_translatable_spec_nothing_is_in_flight() -> None:
    status = derive(
        desired=None, observed=replace(OBSERVED, disks=(*OBSERVED.disks, ObservedDisk("x", "/x")))
    )
    assert set(conditions(status)) == {"Ready"}
    assert [(v.name, v.phase) for v in status.volume_status or ()] == [("root", "Ready"), ("x", "Ready")]


def test_phase_status_without_a_machine() -> None:
    status = phase_status(vmi(), VMIPhase.FAILED, reason="cannot start: no image", now=NOW)
    assert (status.phase, status.reason) == (VMIPhase.FAILED, "cannot start: no image")
    assert conditions(status) == {"Ready": ("False", "GuestNotRunning", None)}


def test_a_paused_machine_is_running_with_the_paused_condition_until_it_resumes() -> None:
    paused = derive(replace(OBSERVED, paused=True), phase=VMIPhase.RUNNING)
    assert paused.phase is VMIPhase.RUNNING
    assert conditions(paused)["Paused"] == ("True", "PausedByUser", "VMI was paused by user")
    resumed = machine_status(
        vmi(phase=VMIPhase.RUNNING, conditions=paused.conditions),
        OBSERVED,
        desired=DESIRED,
        failures={},
        now=LATER,
    )
    assert "Paused" not in conditions(resumed)


def test_a_hotplugged_volume_in_the_guest_is_ready_as_upstream_says_it() -> None:
    data = DiskSpec("data", "/data.qcow2", bus="scsi", hotpluggable=True)
    desired = replace(DESIRED, disks=(*DESIRED.disks, data))
    observed = replace(OBSERVED, disks=(*OBSERVED.disks, ObservedDisk("data", "/data.qcow2")))
    entries = {v.name: v for v in derive(observed, desired=desired).volume_status or ()}
    assert entries["data"].to_wire() == {
        "name": "data",
        "target": "sda",
        "phase": "Ready",
        "reason": "VolumeReady",
        "message": "Successfully attach hotplugged volume data to VM",
        "hotplugVolume": {},
    }
    assert entries["root"].to_wire() == {"name": "root", "target": "vda", "phase": "Ready"}


def test_an_empty_cdrom_drive_has_no_volume_status() -> None:
    empty = DiskSpec("cd", "", bus="sata", cdrom=True)
    desired = replace(DESIRED, disks=(*DESIRED.disks, empty))
    observed = replace(OBSERVED, disks=(*OBSERVED.disks, ObservedDisk("cd", "", cdrom=True)))
    assert [v.name for v in derive(observed, desired=desired).volume_status or ()] == ["root"]


def test_an_ejecting_cdrom_medium_is_detaching() -> None:
    empty = DiskSpec("cd", "", bus="sata", cdrom=True)
    desired = replace(DESIRED, disks=(*DESIRED.disks, empty))
    observed = replace(OBSERVED, disks=(*OBSERVED.disks, ObservedDisk("cd", "/iso.qcow2", cdrom=True)))
    entries = {v.name: v.phase for v in derive(observed, desired=desired).volume_status or ()}
    assert entries["cd"] == "Detaching"


def test_a_pending_volume_whose_image_is_ready_is_attached_to_node() -> None:
    desired = replace(DESIRED, disks=(*DESIRED.disks, DiskSpec("data", "/data.qcow2", hotpluggable=True)))
    pending = derive(desired=desired)
    phases = {v.name: v.phase for v in attached_to_node(pending, "data").volume_status or ()}
    assert phases == {"root": "Ready", "data": "AttachedToNode"}


def test_only_a_pending_volume_becomes_attached_to_node() -> None:
    status = derive()
    assert attached_to_node(status, "root") == status


def test_a_guest_agent_that_answers_sets_agent_connected() -> None:
    status = machine_status(
        vmi(), replace(OBSERVED, agent_connected=True), desired=DESIRED, failures={}, now=NOW
    )
    assert [(c.status, c.reason) for c in status.conditions or () if c.type == "AgentConnected"] == [
        ("True", None)
    ]


def test_no_guest_agent_no_agent_connected_condition() -> None:
    status = machine_status(vmi(), OBSERVED, desired=DESIRED, failures={}, now=NOW)
    assert status.condition("AgentConnected") is None


def test_the_guest_agents_addresses_join_the_nic_of_their_mac() -> None:
    seen = GuestInterface(name="eth0", mac="02:00:00:00:00:01", ip_addresses=("10.0.2.15", "fe80::1"))
    observed = replace(OBSERVED, agent_connected=True, guest_interfaces=(seen,))
    status = machine_status(vmi(), observed, desired=DESIRED, failures={}, now=NOW)
    assert status.interfaces == [
        VMIInterfaceStatus(
            name="default",
            mac="02:00:00:00:00:01",
            link_state="up",
            info_source="domain, guest-agent",
            interface_name="eth0",
            ip_address="10.0.2.15",
            ip_addresses=["10.0.2.15", "fe80::1"],
        )
    ]


def test_a_running_machine_says_whether_its_guest_can_migrate() -> None:
    status = derive()
    live = status.condition(LIVE_MIGRATABLE)
    assert live is not None
    assert (live.status, live.reason) == ("False", "InterfaceNotLiveMigratable")
