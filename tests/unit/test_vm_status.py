"""The VM status is derived in one pure function from the VM, its VMI and the plan."""

from __future__ import annotations

from vmplane.api.meta import Condition
from vmplane.api.vm import PendingChange, PrintableStatus, VirtualMachine, VirtualMachineStatus
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.plan import Plan, RestartRequired
from vmplane.rollout.vm_status import Observation, derive_status

NOW = "2026-11-28T10:00:00Z"


def vm(**status: object) -> VirtualMachine:
    return VirtualMachine.model_validate(
        {
            "metadata": {"name": "v", "generation": 3},
            "spec": {"runStrategy": "Always", "template": {"spec": {}}},
            "status": status or None,
        }
    )


def vmi(phase: str, *conditions: dict[str, str]) -> VirtualMachineInstance:
    return VirtualMachineInstance.model_validate(
        {"metadata": {"name": "v"}, "status": {"phase": phase, "conditions": list(conditions)}}
    )


def empty_plan(running: VirtualMachineInstance) -> Plan:
    return Plan((), (), None, running.spec)


def test_vm_without_vmi_is_stopped_and_not_ready() -> None:
    status = derive_status(vm(), Observation(None, None, crash_loop=False, now=NOW))
    assert status.printable_status is PrintableStatus.STOPPED
    assert status.conditions is not None
    assert (status.conditions[0].type, status.conditions[0].status, status.conditions[0].reason) == (
        "Ready",
        "False",
        "VMINotExists",
    )


def test_running_vmi_makes_vm_running_and_ready() -> None:
    running = vmi("Running", {"type": "Ready", "status": "True"})
    status = derive_status(vm(), Observation(running, empty_plan(running), crash_loop=False, now=NOW))
    assert status.printable_status is PrintableStatus.RUNNING
    assert status.ready is True


def test_restart_required_carries_reason_and_message_of_the_plan() -> None:
    running = vmi("Running")
    plan = Plan((), (), RestartRequired("CPUSocketsReduced", "all changes"), running.spec)
    status = derive_status(vm(), Observation(running, plan, crash_loop=False, now=NOW))
    required = next(c for c in status.conditions or () if c.type == "RestartRequired")
    assert (required.status, required.reason, required.message) == (
        "True",
        "CPUSocketsReduced",
        "all changes",
    )


def test_restart_required_keeps_its_transition_time_while_it_stays_true() -> None:
    earlier = Condition(
        type="RestartRequired",
        status="True",
        reason="x",
        message="m",
        last_transition_time="2026-01-01T00:00:00Z",
    )
    running = vmi("Running")
    plan = Plan((), (), RestartRequired("y", "n"), running.spec)
    status = derive_status(vm(conditions=[earlier.to_wire()]), Observation(running, plan, False, NOW))
    required = next(c for c in status.conditions or () if c.type == "RestartRequired")
    assert required.last_transition_time == "2026-01-01T00:00:00Z"


def test_vmi_conditions_are_mirrored_except_ready_failure_and_restart_required() -> None:
    running = vmi(
        "Running",
        {"type": "Ready", "status": "True"},
        {"type": "HotVCPUChange", "status": "True"},
        {"type": "Failure", "status": "True"},
        {"type": "RestartRequired", "status": "True"},
    )
    status = derive_status(vm(), Observation(running, empty_plan(running), False, NOW))
    assert [c.type for c in status.conditions or ()] == ["Ready", "HotVCPUChange"]


def test_observed_generation_follows_the_vm_once_converged() -> None:
    running = vmi("Running")
    status = derive_status(vm(observedGeneration=1), Observation(running, empty_plan(running), False, NOW))
    assert (status.observed_generation, status.desired_generation) == (3, 3)


def test_observed_generation_stays_while_changes_are_pending() -> None:
    running = vmi("Running")
    change = PendingChange(
        path="spec.template.spec.hostname", running="a", desired="b", reason="r", message="m"
    )
    plan = Plan((), (change,), RestartRequired("r", "m"), running.spec)
    status = derive_status(vm(observedGeneration=1), Observation(running, plan, False, NOW))
    assert (status.observed_generation, status.desired_generation) == (1, 3)


def test_unschedulable_vmi_shows_error_unschedulable() -> None:
    pending = vmi("Pending", {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})
    status = derive_status(vm(), Observation(pending, None, False, NOW))
    assert status.printable_status is PrintableStatus.ERROR_UNSCHEDULABLE


def test_failed_vmi_waiting_for_backoff_shows_crash_loop() -> None:
    failed = vmi("Failed")
    status = derive_status(vm(), Observation(failed, None, crash_loop=True, now=NOW))
    assert status.printable_status is PrintableStatus.CRASH_LOOP_BACK_OFF


def test_status_of_unchanged_inputs_is_equal_so_nothing_is_written() -> None:
    running = vmi("Running", {"type": "Ready", "status": "True"})
    first = derive_status(vm(), Observation(running, empty_plan(running), False, NOW))
    again = derive_status(
        vm(**first.to_wire()), Observation(running, empty_plan(running), False, "2027-01-01T00:00:00Z")
    )
    assert again == VirtualMachineStatus.model_validate(first.to_wire())


def test_vm_whose_vmi_is_paused_prints_paused_and_mirrors_the_condition() -> None:
    paused = vmi("Running", {"type": "Paused", "status": "True", "reason": "PausedByUser"})
    status = derive_status(vm(), Observation(paused, empty_plan(paused), crash_loop=False, now=NOW))
    assert status.printable_status is PrintableStatus.PAUSED
    assert "Paused" in [c.type for c in status.conditions or ()]
