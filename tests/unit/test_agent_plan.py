"""``agent.plan.decide``: what the node agent does for one VMI, given what it reads. Pure, table-driven."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vmplane.agent.hotplug import SetMemory, SetSockets
from vmplane.agent.plan import (
    DEFAULT_GRACE_PERIOD,
    LOST_MACHINE,
    Boot,
    Discard,
    Finalize,
    Ignore,
    Report,
    Sync,
    decide,
)
from vmplane.api.vmi import HotplugFailure, VirtualMachineInstance, VMIPhase
from vmplane.host.paths import MachineSpecError
from vmplane.hypervisor.base import (
    DiskSpec,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
)
from vmplane.rollout.fields import CPU_SOCKETS, MEMORY_GUEST
from vmplane.testing.builders import vm_spec

GiB = 1 << 30
NOW = "2026-11-28T10:00:00Z"
NODE = "node01"
SPEC = MachineSpec(
    name="ns_vm",
    uuid="u",
    sockets=2,
    max_sockets=4,
    memory_bytes=2 * GiB,
    disks=(DiskSpec("root", "/root.qcow2"),),
    nics=(NicSpec("default", "02:00:00:00:00:01"),),
)
RUNNING = ObservedMachine(
    name="ns_vm",
    state=MachineState.RUNNING,
    sockets=1,
    vcpus=1,
    memory_bytes=GiB,
    disks=(ObservedDisk("root", "/root.qcow2"),),
    nics=(ObservedNic("default", "02:00:00:00:00:01", True),),
)


def vmi(
    phase: VMIPhase = VMIPhase.RUNNING, *, node: str = NODE, deleting: bool = False, **status: Any
) -> VirtualMachineInstance:
    metadata: dict[str, Any] = {"name": "vm", "namespace": "ns", "uid": "u"}
    if deleting:
        metadata["deletionTimestamp"] = NOW
    return VirtualMachineInstance.model_validate(
        {
            "metadata": metadata,
            "spec": vm_spec(termination_grace_period_seconds=5 if deleting else None).to_wire(),
            "status": {"phase": phase.value, "nodeName": node, **status},
        }
    )


CASES: dict[str, tuple[VirtualMachineInstance | None, ObservedMachine | None, Any, type]] = {
    "gone": (None, RUNNING, SPEC, Discard),
    "another-nodes": (vmi(node="node02"), None, SPEC, Ignore),
    "deleting": (vmi(deleting=True), RUNNING, SPEC, Finalize),
    "succeeded": (vmi(VMIPhase.SUCCEEDED), RUNNING, SPEC, Discard),
    "failed": (vmi(VMIPhase.FAILED), None, SPEC, Discard),
    "scheduled-without-machine": (vmi(VMIPhase.SCHEDULED), None, SPEC, Boot),
    "running-without-machine": (vmi(), None, SPEC, Report),
    "untranslatable-without-machine": (vmi(VMIPhase.SCHEDULED), None, MachineSpecError("bad"), Report),
    "running-with-machine": (vmi(), RUNNING, SPEC, Sync),
}


@pytest.mark.parametrize(("current", "observed", "desired", "expected"), CASES.values(), ids=CASES.keys())
def test_decide_picks_one_step(current: Any, observed: Any, desired: Any, expected: type) -> None:
    assert type(decide(current, observed, desired, node=NODE, now=NOW)) is expected


def test_a_deleted_vmi_is_stopped_within_its_grace_period() -> None:
    assert decide(vmi(deleting=True), RUNNING, SPEC, node=NODE, now=NOW) == Finalize(5.0)
    plain = vmi().model_copy(
        update={"metadata": vmi().metadata.model_copy(update={"deletion_timestamp": NOW})}
    )
    assert decide(plain, RUNNING, SPEC, node=NODE, now=NOW) == Finalize(DEFAULT_GRACE_PERIOD)


def test_a_running_vmi_whose_machine_is_gone_fails() -> None:
    plan = decide(vmi(), None, SPEC, node=NODE, now=NOW)
    assert isinstance(plan, Report)
    assert (plan.status.phase, plan.status.reason) == (VMIPhase.FAILED, LOST_MACHINE)


def test_a_spec_that_cannot_run_here_fails_at_start() -> None:
    plan = decide(vmi(VMIPhase.SCHEDULED), None, MachineSpecError("no such image"), node=NODE, now=NOW)
    assert isinstance(plan, Report)
    assert plan.status.reason == "cannot start: no such image"


def test_a_running_machine_behind_its_spec_is_synced_with_the_hotplugs_in_flight_reported() -> None:
    plan = decide(vmi(), RUNNING, SPEC, node=NODE, now=NOW)
    assert isinstance(plan, Sync)
    assert [type(op) for op in plan.operations] == [SetSockets, SetMemory]
    assert plan.in_flight is not None
    in_flight = {c.type: c.status for c in plan.in_flight.conditions or ()}
    assert (in_flight["HotVCPUChange"], in_flight["HotMemoryChange"]) == ("True", "True")


def test_a_failed_path_is_not_retried() -> None:
    failed = [HotplugFailure(path=CPU_SOCKETS, message="refused").to_wire()]
    plan = decide(vmi(hotplugFailures=failed), RUNNING, SPEC, node=NODE, now=NOW)
    assert isinstance(plan, Sync)
    assert [op.path for op in plan.operations] == [MEMORY_GUEST]
    assert plan.failures == {CPU_SOCKETS: "refused"}


def test_a_machine_in_sync_needs_nothing_in_flight() -> None:
    in_sync = replace(SPEC, sockets=1, memory_bytes=GiB)
    plan = decide(vmi(), RUNNING, in_sync, node=NODE, now=NOW)
    assert plan == Sync(in_sync, (), None, {})


def test_an_untranslatable_spec_hotplugs_nothing() -> None:
    plan = decide(vmi(), RUNNING, MachineSpecError("bad"), node=NODE, now=NOW)
    assert plan == Sync(None, (), None, {})
