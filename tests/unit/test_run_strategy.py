"""``controller.run_strategy.decide``: per run strategy, per state-change request, and the crash backoff.

The rules are those of KubeVirt's ``syncRunStrategy`` (pkg/virt-controller/watch/vm.go) except where
docs/run-strategies.md says vmplane differs (a deterministic doubling backoff; every Failed VMI counts).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vmplane.api.timestamps import timestamp
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.controller.run_strategy import RunAction, RunConfig, StartFailure, backoff, decide
from vmplane.testing.clock import START

NOW = START
CONFIG = RunConfig(crash_backoff=10, max_backoff=300)


def vm(strategy: str = "Always", *, deleting: bool = False, **status: Any) -> VirtualMachine:
    metadata: dict[str, Any] = {"name": "vm", "namespace": "ns", "uid": "vm-uid"}
    if deleting:
        metadata["deletionTimestamp"] = timestamp(NOW)
    return VirtualMachine.model_validate(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": metadata,
            "spec": {"runStrategy": strategy, "template": {"spec": {"domain": {"devices": {}}}}},
            "status": status,
        }
    )


def vmi(phase: str = "Running", *, uid: str = "vmi-1", deleting: bool = False) -> VirtualMachineInstance:
    metadata: dict[str, Any] = {"name": "vm", "namespace": "ns", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = timestamp(NOW)
    return VirtualMachineInstance.model_validate(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": metadata,
            "spec": {"domain": {"devices": {}}},
            "status": {"phase": phase, "reason": "QEMU was killed by SIGKILL"},
        }
    )


def failure(count: int, *, uid: str = "vmi-0", retry_in: float = 0) -> dict[str, Any]:
    return StartFailure(count, uid, NOW + timedelta(seconds=retry_in)).to_wire()


# -- per run strategy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "action"),
    [
        pytest.param("Always", RunAction.START, id="Always-starts"),
        pytest.param("RerunOnFailure", RunAction.START, id="RerunOnFailure-starts"),
        pytest.param("Once", RunAction.START, id="Once-starts"),
        pytest.param("Manual", RunAction.NONE, id="Manual-waits-for-a-start-request"),
        pytest.param("Halted", RunAction.NONE, id="Halted-stays-stopped"),
    ],
)
def test_without_a_vmi(strategy: str, action: RunAction) -> None:
    assert decide(vm(strategy), None, CONFIG, NOW).action is action


def test_once_does_not_start_again_after_its_vmi_was_created() -> None:
    assert decide(vm("Once", created=True), None, CONFIG, NOW).action is RunAction.NONE


@pytest.mark.parametrize("strategy", ["Always", "RerunOnFailure", "Once", "Manual"])
def test_a_running_vmi_is_left_alone(strategy: str) -> None:
    decision = decide(vm(strategy), vmi("Running"), CONFIG, NOW)
    assert (decision.action, decision.requeue_after) == (RunAction.NONE, None)


def test_halted_deletes_a_running_vmi_and_clears_the_start_failure() -> None:
    decision = decide(vm("Halted", startFailure=failure(2, retry_in=30)), vmi("Running"), CONFIG, NOW)
    assert decision.action is RunAction.DELETE_VMI
    assert decision.status.start_failure is None


@pytest.mark.parametrize(
    ("strategy", "phase", "action"),
    [
        pytest.param("Always", "Succeeded", RunAction.DELETE_VMI, id="Always-restarts-after-success"),
        pytest.param("Always", "Failed", RunAction.DELETE_VMI, id="Always-restarts-after-failure"),
        pytest.param("RerunOnFailure", "Failed", RunAction.DELETE_VMI, id="RerunOnFailure-reruns-a-failure"),
        pytest.param("RerunOnFailure", "Succeeded", RunAction.NONE, id="RerunOnFailure-keeps-a-success"),
        pytest.param("Once", "Failed", RunAction.NONE, id="Once-never-reruns"),
        pytest.param("Manual", "Failed", RunAction.NONE, id="Manual-never-reruns"),
    ],
)
def test_a_finished_vmi(strategy: str, phase: str, action: RunAction) -> None:
    assert decide(vm(strategy), vmi(phase), CONFIG, NOW).action is action


def test_legacy_running_true_behaves_as_always() -> None:
    wire = vm().to_wire()
    wire["spec"] = {"running": True, "template": wire["spec"]["template"]}
    assert decide(VirtualMachine.model_validate(wire), None, CONFIG, NOW).action is RunAction.START


# -- deletion ---------------------------------------------------------------------------------------


def test_a_deleted_vm_takes_its_vmi_with_it() -> None:
    assert decide(vm(deleting=True), vmi(), CONFIG, NOW).action is RunAction.DELETE_VMI


def test_a_vmi_being_deleted_is_waited_for() -> None:
    assert decide(vm(), vmi(deleting=True), CONFIG, NOW).action is RunAction.NONE


# -- state-change requests --------------------------------------------------------------------------


def test_a_stop_request_for_the_vmi_deletes_it_and_stays_until_it_is_gone() -> None:
    requests = [{"action": "Stop", "uid": "vmi-1"}, {"action": "Start"}]
    decision = decide(vm("Manual", stateChangeRequests=requests), vmi(), CONFIG, NOW)
    assert decision.action is RunAction.DELETE_VMI
    assert [r.action for r in decision.status.state_change_requests or []] == ["Stop", "Start"]


def test_a_stop_request_is_dropped_once_the_vmi_is_gone_and_the_start_follows() -> None:
    requests = [{"action": "Stop", "uid": "vmi-1"}, {"action": "Start"}]
    stopped = decide(vm("Manual", stateChangeRequests=requests), None, CONFIG, NOW)
    assert stopped.action is RunAction.NONE
    assert [r.action for r in stopped.status.state_change_requests or []] == ["Start"]
    started = decide(vm("Manual", stateChangeRequests=[{"action": "Start"}]), None, CONFIG, NOW)
    assert (started.action, started.status.state_change_requests) == (RunAction.START, None)


def test_a_stop_request_for_another_vmi_is_dropped_without_touching_this_one() -> None:
    requests = [{"action": "Stop", "uid": "old-vmi"}]
    decision = decide(vm("Manual", stateChangeRequests=requests), vmi(), CONFIG, NOW)
    assert (decision.action, decision.status.state_change_requests) == (RunAction.NONE, None)


def test_a_start_request_first_deletes_a_finished_vmi() -> None:
    requests = [{"action": "Start"}]
    decision = decide(vm("Manual", stateChangeRequests=requests), vmi("Succeeded"), CONFIG, NOW)
    assert decision.action is RunAction.DELETE_VMI
    assert decision.status.state_change_requests is not None


def test_a_start_request_while_running_is_dropped() -> None:
    decision = decide(vm("Manual", stateChangeRequests=[{"action": "Start"}]), vmi(), CONFIG, NOW)
    assert (decision.action, decision.status.state_change_requests) == (RunAction.NONE, None)


def test_requests_win_over_the_run_strategy() -> None:
    """A Start request on a Halted VM starts it (virtctl start under Halted, before the spec flips)."""
    decision = decide(vm("Halted", stateChangeRequests=[{"action": "Start"}]), None, CONFIG, NOW)
    assert decision.action is RunAction.START


# -- crash backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "seconds"),
    [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (20, 300)],
    ids=lambda v: str(v),
)
def test_backoff_doubles_to_its_cap(count: int, seconds: float) -> None:
    assert backoff(count, CONFIG) == seconds


def test_a_failed_vmi_is_counted_and_the_next_start_waits() -> None:
    decision = decide(vm("Always"), vmi("Failed", uid="vmi-1"), CONFIG, NOW)
    assert decision.action is RunAction.DELETE_VMI
    assert decision.status.start_failure == failure(1, uid="vmi-1", retry_in=10)
    assert decision.requeue_after == 10
    assert decision.failure_message == "the guest failed (QEMU was killed by SIGKILL); restarting in 10s"


def test_consecutive_failures_double_the_wait() -> None:
    decision = decide(vm("Always", startFailure=failure(2)), vmi("Failed", uid="vmi-3"), CONFIG, NOW)
    assert decision.status.start_failure == failure(3, uid="vmi-3", retry_in=40)
    assert decision.requeue_after == 40


def test_a_failure_already_counted_is_not_counted_again() -> None:
    counted = failure(1, uid="vmi-1", retry_in=10)
    decision = decide(vm("Always", startFailure=counted), vmi("Failed", uid="vmi-1"), CONFIG, NOW)
    assert decision.status.start_failure == counted
    assert decision.failure_message is None


def test_a_succeeded_vmi_under_always_restarts_without_counting_a_failure() -> None:
    decision = decide(vm("Always"), vmi("Succeeded"), CONFIG, NOW)
    assert (decision.action, decision.status.start_failure, decision.requeue_after) == (
        RunAction.DELETE_VMI,
        None,
        None,
    )


def test_the_start_waits_out_the_backoff_and_is_crash_looping() -> None:
    decision = decide(vm("Always", startFailure=failure(2, retry_in=15)), None, CONFIG, NOW)
    assert (decision.action, decision.requeue_after, decision.crash_looping) == (RunAction.NONE, 15, True)


def test_the_start_happens_once_the_backoff_has_passed() -> None:
    decision = decide(
        vm("Always", startFailure=failure(2, retry_in=15)), None, CONFIG, NOW + timedelta(seconds=15)
    )
    assert (decision.action, decision.crash_looping) == (RunAction.START, False)


def test_a_running_vmi_clears_the_start_failure() -> None:
    decision = decide(vm("Always", startFailure=failure(3)), vmi("Running"), CONFIG, NOW)
    assert decision.status.start_failure is None


def test_the_start_failure_record_round_trips_its_wire_form() -> None:
    wire = failure(4, uid="vmi-9", retry_in=80)
    assert wire == {
        "consecutiveFailCount": 4,
        "lastFailedVMIUID": "vmi-9",
        "retryAfterTimestamp": "2026-11-28T10:01:20Z",
    }
    assert StartFailure.from_wire(wire) == StartFailure(4, "vmi-9", NOW + timedelta(seconds=80))


def test_a_vm_deleted_with_the_orphan_finalizer_orphans_its_vmi_instead_of_deleting_it() -> None:
    deleting = vm(deleting=True)
    orphaning = deleting.model_copy(
        update={"metadata": deleting.metadata.model_copy(update={"finalizers": ["orphan"]})}
    )
    assert decide(orphaning, vmi(), CONFIG, NOW).action is RunAction.ORPHAN
    assert decide(orphaning, None, CONFIG, NOW).action is RunAction.ORPHAN


def test_a_vm_deleted_without_the_orphan_finalizer_still_deletes_its_vmi() -> None:
    assert decide(vm(deleting=True), vmi(), CONFIG, NOW).action is RunAction.DELETE_VMI
