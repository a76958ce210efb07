"""``rollout.restarts``, ``rollout.windows`` and ``rollout.approval``: which VMs a window restarts,
in which order and batches, the health gate, a run step by step (resumable from its status), and
what each restart-approval mode asks for. Time is a ``FakeClock``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from vmplane.api.maintenance import BatchMember, MaintenanceWindow, RunPhase, window_causes
from vmplane.api.restart_approval import RESTART_APPROVAL_ANNOTATION as KEY
from vmplane.api.restart_approval import RestartApproval, approval_causes, restart_approval
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.approval import RESTART_SCHEDULED, approval_decision
from vmplane.rollout.restarts import Gate, VMState, batches, gate, ordered, scaled_max_unavailable, vm_state
from vmplane.rollout.windows import WindowStep, step_window
from vmplane.testing.clock import START, FakeClock

# Saturday 2026-11-28 10:00Z: the window below is open from 09:00 to 12:00 UTC.
SPEC: dict[str, Any] = {
    "schedule": {"days": ["Sat"], "start": "09:00", "end": "12:00", "timeZone": "UTC"},
    "selector": {"matchLabels": {"tier": "web"}},
    "maxUnavailable": 2,
    "healthGate": {"timeoutSeconds": 60},
}


def window(status: dict[str, Any] | None = None, **spec: Any) -> MaintenanceWindow:
    body: dict[str, Any] = {"metadata": {"name": "nightly"}, "spec": {**SPEC, **spec}}
    if status is not None:
        body["status"] = status
    return MaintenanceWindow.model_validate(body)


def vm(name: str, *, uid: str | None = None, **fields: Any) -> VMState:
    defaults: dict[str, Any] = {
        "namespace": "default",
        "name": name,
        "labels": {"tier": "web"},
        "namespace_labels": {},
        "approval": RestartApproval.WINDOW,
        "pending": ("spec.template.spec.domain.cpu.cores",),
        "vmi_uid": uid or f"{name}-1",
        "ready": True,
        "available": True,
    }
    return VMState(**{**defaults, **fields})


def restarted(state: VMState) -> VMState:
    """The VM after its restart: a new VMI, Ready, nothing pending."""
    return replace(state, vmi_uid=f"{state.name}-2", pending=())


def advance(w: MaintenanceWindow, step: WindowStep) -> MaintenanceWindow:
    status = {"run": step.run.to_wire()} if step.run is not None else {}
    return w.model_copy(update={"status": window(status).status})


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(2, 10, 2), ("25%", 10, 2), ("10%", 5, 1), ("50%", 5, 2), ("100%", 3, 3), ("1%", 10, 1)],
    ids=["count", "25%-of-10-rounds-down", "10%-of-5-is-at-least-1", "50%-of-5", "100%", "1%-of-10"],
)
def test_max_unavailable_scales_as_kubernetes_rounding_down_but_never_below_one(
    value: int | str, total: int, expected: int
) -> None:
    assert scaled_max_unavailable(value, total) == expected


def test_vms_restart_by_priority_label_lowest_first_then_by_name() -> None:
    vms = [
        vm("b", labels={"tier": "web", "prio": "2"}),
        vm("a"),
        vm("c", labels={"tier": "web", "prio": "1"}),
        vm("d", labels={"tier": "web", "prio": "x"}),
        vm("e", labels={"tier": "web", "prio": "2"}),
    ]
    assert [v.name for v in ordered(vms, "prio")] == ["c", "b", "e", "a", "d"]


def test_ten_pending_vms_with_max_unavailable_two_make_five_batches() -> None:
    vms = [vm(f"vm-{i}") for i in range(10)]
    planned = batches(window().spec, vms)
    assert [[v.name for v in b] for b in planned] == [[f"vm-{i}", f"vm-{i + 1}"] for i in range(0, 10, 2)]


def test_only_selected_window_vms_with_pending_changes_are_planned() -> None:
    vms = [
        vm("selected"),
        vm("other-tier", labels={"tier": "db"}),
        vm("manual", approval=RestartApproval.MANUAL),
        vm("automatic", approval=RestartApproval.AUTOMATIC),
        vm("reverted", pending=()),
        vm("stopped", vmi_uid=None),
        vm("once", restartable=False),
    ]
    assert [v.name for b in batches(window().spec, vms) for v in b] == ["selected"]


def test_a_namespace_selector_limits_the_window_to_matching_namespaces() -> None:
    spec = window(
        namespaceSelector={"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}
    )
    vms = [vm("prod", namespace_labels={"env": "prod"}), vm("dev", namespace_labels={"env": "dev"})]
    assert [v.name for b in batches(spec.spec, vms) for v in b] == ["prod"]


def test_the_gate_passes_once_a_new_vmi_is_ready() -> None:
    member = BatchMember(namespace="default", name="a", vmi_uid="a-1")
    clock = FakeClock()
    assert gate(member, vm("a"), started=START, now=clock(), timeout=60) is Gate.WAITING
    assert gate(member, restarted(vm("a")), started=START, now=clock(), timeout=60) is Gate.PASSED


def test_the_gate_waits_for_a_guest_agent_the_vmi_reports() -> None:
    member = BatchMember(namespace="default", name="a", vmi_uid="a-1")
    silent = replace(restarted(vm("a")), guest_reporting=False)
    assert gate(member, silent, started=START, now=START, timeout=60) is Gate.WAITING


def test_the_gate_fails_when_the_vm_is_not_ready_by_the_timeout() -> None:
    member = BatchMember(namespace="default", name="a", vmi_uid="a-1")
    booting = replace(restarted(vm("a")), ready=False)
    later = START + timedelta(seconds=60)
    assert gate(member, booting, started=START, now=later - timedelta(seconds=1), timeout=60) is Gate.WAITING
    assert gate(member, booting, started=START, now=later, timeout=60) is Gate.FAILED


def run_window(
    vms: list[VMState], clock: FakeClock, w: MaintenanceWindow
) -> tuple[MaintenanceWindow, list[list[str]]]:
    """Step the window to its end, restarting each batch at once; the batches it started."""
    started: list[list[str]] = []
    for _ in range(50):
        step = step_window(w, vms, clock())
        w = advance(w, step)
        if step.restart:
            names = [v.name for v in step.restart]
            started.append(names)
            down = sum(1 for v in vms if not v.available) + len(names)
            assert down <= 2
            vms = [restarted(v) if v.name in names else v for v in vms]
        if step.run is not None and step.run.phase is not RunPhase.RUNNING:
            break
        clock.advance(5)
    return w, started


def test_a_window_run_restarts_its_batches_in_turn_and_completes() -> None:
    clock = FakeClock()
    w, started = run_window([vm(f"vm-{i}") for i in range(10)], clock, window())
    assert started == [[f"vm-{i}", f"vm-{i + 1}"] for i in range(0, 10, 2)]
    assert w.status is not None
    assert w.status.run is not None
    assert (w.status.run.phase, w.status.run.batches_done, len(w.status.run.restarted)) == (
        RunPhase.COMPLETED,
        5,
        10,
    )


def test_no_batch_starts_while_the_previous_one_is_not_ready() -> None:
    clock = FakeClock()
    vms = [vm(f"vm-{i}") for i in range(4)]
    first = step_window(window(), vms, clock())
    assert [v.name for v in first.restart] == ["vm-0", "vm-1"]
    w = advance(window(), first)
    booting = [
        replace(restarted(v), ready=False, available=False) if v.name in ("vm-0", "vm-1") else v for v in vms
    ]
    clock.advance(10)
    second = step_window(w, booting, clock())
    assert second.restart == ()
    assert second.run is not None
    assert second.run.batches_done == 0


def test_a_vm_that_never_becomes_ready_halts_the_window_naming_it() -> None:
    clock = FakeClock()
    vms = [vm("a"), vm("b"), vm("c")]
    w = advance(window(), step_window(window(), vms, clock()))
    stuck = [replace(restarted(vms[0]), ready=False, available=False), restarted(vms[1]), vms[2]]
    clock.advance(61)
    step = step_window(w, stuck, clock())
    assert step.run is not None
    assert step.run.phase is RunPhase.HALTED
    assert step.restart == ()
    [event] = [e for e in step.events if e.reason == "HealthGateFailed"]
    assert event.type == "Warning"
    assert "default/a" in event.message
    [halted] = step.conditions()
    assert (halted.type, halted.status, halted.reason) == ("Halted", "True", "HealthGateFailed")
    assert halted.message is not None
    assert halted.message.startswith("default/a:")
    clock.advance(5)
    assert step_window(advance(w, step), stuck, clock()).restart == ()


def test_a_vm_reverted_before_its_batch_is_skipped() -> None:
    clock = FakeClock()
    vms = [vm("a"), vm("b", pending=()), vm("c")]
    assert [v.name for v in step_window(window(), vms, clock()).restart] == ["a", "c"]


def test_a_vm_with_a_hotplug_in_flight_waits_for_a_later_batch() -> None:
    clock = FakeClock()
    vms = [vm("a", blocked="a hotplug is in flight"), vm("b"), vm("c")]
    assert [v.name for v in step_window(window(), vms, clock()).restart] == ["b", "c"]


def test_vms_already_down_count_against_max_unavailable() -> None:
    clock = FakeClock()
    vms = [vm("a"), vm("b"), vm("down", labels={"tier": "web"}, pending=(), ready=False, available=False)]
    assert [v.name for v in step_window(window(), vms, clock()).restart] == ["a"]


def test_a_run_resumes_from_its_status_asking_again_for_restarts_not_yet_made() -> None:
    clock = FakeClock()
    vms = [vm("a"), vm("b"), vm("c")]
    stored = advance(window(), step_window(window(), vms, clock()))
    # The plane stopped after storing the batch, before asking for its restarts: a new plane asks.
    clock.advance(5)
    resumed = step_window(window(stored.status.to_wire() if stored.status else None), vms, clock())
    assert [v.name for v in resumed.restart] == ["a", "b"]
    assert resumed.run is not None
    assert resumed.run.current is not None
    assert resumed.run.current.index == 1


def test_the_window_closes_with_vms_left_for_its_next_opening() -> None:
    clock = FakeClock()
    vms = [vm("a"), vm("b"), vm("c")]
    w = advance(window(), step_window(window(), vms, clock()))
    clock.advance(2 * 3600)  # 12:00: the window has ended
    step = step_window(w, vms, clock())
    assert step.run is not None
    assert step.run.phase is RunPhase.CLOSED
    assert step.next_start == START + timedelta(days=7) - timedelta(hours=1)


def test_a_closed_window_does_nothing_until_it_opens() -> None:
    clock = FakeClock(START + timedelta(hours=3))
    step = step_window(window(), [vm("a")], clock())
    assert (step.run, step.restart, step.wake_at) == (
        None,
        (),
        START + timedelta(days=7) - timedelta(hours=1),
    )


def test_automatic_approval_restarts_at_once_unless_blocked() -> None:
    automatic = vm("a", approval=RestartApproval.AUTOMATIC)
    assert approval_decision(automatic, [], START).restart
    assert not approval_decision(replace(automatic, blocked="a hotplug is in flight"), [], START).restart
    assert not approval_decision(replace(automatic, pending=()), [], START).restart
    assert not approval_decision(replace(automatic, restartable=False), [], START).restart


def test_manual_approval_never_restarts_nor_schedules() -> None:
    decision = approval_decision(vm("a", approval=RestartApproval.MANUAL), [window()], START)
    assert (decision.restart, decision.scheduled) == (False, None)


def test_window_approval_schedules_the_restart_at_the_windows_next_start() -> None:
    clock = FakeClock(START + timedelta(hours=3))
    decision = approval_decision(vm("a"), [window()], clock())
    assert not decision.restart
    assert decision.scheduled is not None
    assert (decision.scheduled.type, decision.scheduled.status) == (RESTART_SCHEDULED, "True")
    assert (
        decision.scheduled.message
        == "pending changes apply in MaintenanceWindow nightly starting 2026-12-05T09:00:00Z"
    )


def test_window_approval_without_a_selecting_window_says_so() -> None:
    decision = approval_decision(vm("a", labels={"tier": "db"}), [window()], START)
    assert decision.scheduled is not None
    assert (decision.scheduled.status, decision.scheduled.reason) == ("False", "NoMaintenanceWindow")


def causes_of(**spec: Any) -> Sequence[tuple[str, str]]:
    return [(c.field, c.message) for c in window_causes(window(**spec))]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"schedule": {**SPEC["schedule"], "days": ["Funday"]}}, "spec.schedule.days[0]"),
        ({"schedule": {**SPEC["schedule"], "start": "25:00"}}, "spec.schedule.start"),
        ({"schedule": {**SPEC["schedule"], "end": "09:00"}}, "spec.schedule.end"),
        ({"schedule": {**SPEC["schedule"], "timeZone": "Mars/Olympus"}}, "spec.schedule.timeZone"),
        ({"schedule": {**SPEC["schedule"], "timeZone": "../../etc/passwd"}}, "spec.schedule.timeZone"),
        ({"schedule": {**SPEC["schedule"], "timeZone": "Europe"}}, "spec.schedule.timeZone"),
        ({"maxUnavailable": 0}, "spec.maxUnavailable"),
        ({"maxUnavailable": "150%"}, "spec.maxUnavailable"),
        ({"maxUnavailable": "two"}, "spec.maxUnavailable"),
        ({"priorityLabel": "not a label"}, "spec.priorityLabel"),
        ({"selector": {"matchLabels": {"bad key!": "x"}}}, "spec.selector.matchLabels"),
        ({"healthGate": {"timeoutSeconds": 0}}, "spec.healthGate.timeoutSeconds"),
    ],
    ids=[
        "day",
        "start",
        "end-equals-start",
        "unknown-zone",
        "zone-path",
        "zone-directory",
        "max-unavailable-zero",
        "percent-above-100",
        "not-a-count",
        "priority-label",
        "selector-key",
        "gate-timeout",
    ],
)
def test_admission_names_the_invalid_field(spec: dict[str, Any], field: str) -> None:
    assert field in [f for f, _ in causes_of(**spec)]


def test_a_valid_window_has_no_causes() -> None:
    assert causes_of(maxUnavailable="25%", priorityLabel="vmplane.io/restart-priority") == []


def vm_with_annotations(own: dict[str, str] | None, template: dict[str, str] | None) -> VirtualMachine:
    return VirtualMachine.model_validate(
        {
            "metadata": {"name": "a", "annotations": own} if own else {"name": "a"},
            "spec": {"template": {"metadata": {"annotations": template} if template else {}, "spec": {}}},
        }
    )


def test_restart_approval_defaults_to_manual_and_the_vm_annotation_wins_over_the_template() -> None:
    assert restart_approval(vm_with_annotations(None, None)) is RestartApproval.MANUAL
    assert restart_approval(vm_with_annotations(None, {KEY: "Window"})) is RestartApproval.WINDOW
    assert (
        restart_approval(vm_with_annotations({KEY: "Automatic"}, {KEY: "Window"}))
        is RestartApproval.AUTOMATIC
    )


def test_an_unknown_restart_approval_is_refused_naming_the_annotation() -> None:
    [cause] = approval_causes(vm_with_annotations(None, {KEY: "Sometimes"}))
    assert cause.field == f"spec.template.metadata.annotations[{KEY}]"
    assert cause.message.startswith('Unsupported value: "Sometimes"')


def vm_object(strategy: str = "Always", generation: int = 1, **status: Any) -> VirtualMachine:
    return VirtualMachine.model_validate(
        {
            "metadata": {"name": "a", "namespace": "default", "uid": "vm-uid", "generation": generation},
            "spec": {"runStrategy": strategy, "template": {"spec": {}}},
            "status": {"pendingChanges": [{"path": "p", "reason": "r", "message": "m"}], **status},
        }
    )


def vmi_object(*conditions: tuple[str, str], deleting: bool = False) -> VirtualMachineInstance:
    metadata: dict[str, Any] = {"name": "a", "namespace": "default", "uid": "vmi-1"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-28T10:00:00Z"
    return VirtualMachineInstance.model_validate(
        {
            "metadata": metadata,
            "spec": {},
            "status": {"phase": "Running", "conditions": [{"type": t, "status": s} for t, s in conditions]},
        }
    )


def test_a_vm_with_a_hotplug_in_flight_is_blocked_from_restarting() -> None:
    state = vm_state(vm_object(), vmi_object(("Ready", "True"), ("HotVCPUChange", "True")), {})
    assert state.blocked == "a hotplug is in flight"
    assert (state.ready, state.available, state.pending) == (True, True, ("p",))


def test_a_vm_whose_restart_is_queued_is_blocked_from_a_second_one() -> None:
    queued = vm_object(stateChangeRequests=[{"action": "Stop", "uid": "vmi-1"}, {"action": "Start"}])
    assert vm_state(queued, vmi_object(("Ready", "True")), {}).blocked is not None


def test_a_vm_whose_status_was_computed_for_an_older_spec_is_blocked_until_it_is_planned_again() -> None:
    edited = vm_object(generation=3, desiredGeneration=2)
    assert vm_state(edited, vmi_object(("Ready", "True")), {}).blocked is not None
    planned = vm_object(generation=3, desiredGeneration=3)
    assert vm_state(planned, vmi_object(("Ready", "True")), {}).blocked is None


def test_a_vmi_being_deleted_is_no_running_vmi_and_the_vm_is_down() -> None:
    state = vm_state(vm_object(), vmi_object(("Ready", "True"), deleting=True), {})
    assert (state.vmi_uid, state.ready, state.available) == (None, False, False)


def test_a_halted_vm_is_not_down_and_a_once_vm_is_not_restartable() -> None:
    halted = vm_state(vm_object("Halted"), None, {})
    assert (halted.available, halted.restartable) == (True, False)
    assert not vm_state(vm_object("Once"), vmi_object(("Ready", "True")), {}).restartable
