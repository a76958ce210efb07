"""The migration controller's pure decision: upstream's phases, limits, target choice, abort."""

from __future__ import annotations

from typing import Any

from vmplane.api.migration import (
    MigrationLimits,
    MigrationPhase,
    VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationState,
)
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.scheduler.migration_plan import (
    MigrationDecision,
    decide_migration,
    decide_through,
    target_spec_selector,
)
from vmplane.store.base import JsonObject

UID = "m-uid"


def node(name: str, **labels: str) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true", **labels}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "4", "memory": "8Gi"},
        },
    }


NODES = [node("node01"), node("node02", zone="b"), node("node03", zone="c")]


def migration(
    phase: str | None = None, deleting: bool = False, **status: Any
) -> VirtualMachineInstanceMigration:
    metadata: JsonObject = {"name": "m", "namespace": "ns", "uid": UID}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T06:00:00Z"
    body: JsonObject = {"metadata": metadata, "spec": {"vmiName": "vm", "addedNodeSelector": {"zone": "b"}}}
    if phase:
        body["status"] = {"phase": phase, **status}
    return VirtualMachineInstanceMigration.model_validate(body)


def vmi(
    state: VirtualMachineInstanceMigrationState | None = None, phase: str = "Running"
) -> VirtualMachineInstance:
    status: JsonObject = {"phase": phase, "nodeName": "node01"}
    if state is not None:
        status["migrationState"] = state.to_wire()
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "vm", "namespace": "ns"},
            "spec": {"domain": {"memory": {"guest": "1Gi"}}},
            "status": status,
        }
    )


def decide(m: VirtualMachineInstanceMigration, v: VirtualMachineInstance | None, others: Any = ()) -> Any:
    return decide_migration(m, v, nodes=NODES, used={}, others=list(others), limits=MigrationLimits())


def handed(**fields: Any) -> VirtualMachineInstanceMigrationState:
    return VirtualMachineInstanceMigrationState(
        source_node="node01", target_node="node02", migration_uid=UID, **fields
    )


def test_a_new_migration_goes_to_scheduling() -> None:
    assert decide(migration(), vmi()).phase is MigrationPhase.SCHEDULING


def test_a_new_migration_waits_while_the_cluster_limit_is_reached() -> None:
    others = [migration("Running") for _ in range(5)]
    decision = decide(migration(), vmi(), others)
    assert (decision.phase, decision.waiting) == (None, "5 migrations in flight: the cluster allows 5")


def test_a_new_migration_waits_while_its_source_node_sends_two() -> None:
    sending = {"migrationState": handed().to_wire()}
    others = [migration("Running", **sending), migration("Running", **sending)]
    assert decide(migration(), vmi(), others).waiting == "2 migrations leave node node01: a node allows 2"


def test_scheduling_picks_a_target_matching_the_added_selector() -> None:
    decision = decide(migration("Scheduling"), vmi())
    assert decision.migration_state == handed()


def test_scheduling_waits_when_no_other_node_fits() -> None:
    m = VirtualMachineInstanceMigration.model_validate(
        {
            "metadata": {"uid": UID},
            "spec": {"vmiName": "vm", "addedNodeSelector": {"zone": "x"}},
            "status": {"phase": "Scheduling"},
        }
    )
    assert (
        decide(m, vmi()).waiting
        == "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_the_vmi_selector_wins_over_the_added_one_on_a_shared_key() -> None:
    assert target_spec_selector({"zone": "a"}, {"zone": "b", "rack": "1"}) == {"zone": "a", "rack": "1"}


def test_a_scheduled_migration_hands_its_state_to_the_vmi() -> None:
    decision = decide(migration("Scheduled", migrationState=handed().to_wire()), vmi())
    assert (decision.phase, decision.vmi_state) == (MigrationPhase.PREPARING_TARGET, handed())


def test_the_target_address_makes_the_target_ready() -> None:
    decision = decide(migration("PreparingTarget"), vmi(handed(target_node_address="127.0.0.1:4444")))
    assert decision.phase is MigrationPhase.TARGET_READY


def test_the_source_starting_makes_the_migration_running() -> None:
    state = handed(target_node_address="127.0.0.1:4444", start_timestamp="2026-12-02T06:00:00Z")
    assert decide(migration("TargetReady"), vmi(state)).phase is MigrationPhase.RUNNING


def test_a_completed_state_makes_the_migration_succeed() -> None:
    assert decide(migration("Running"), vmi(handed(completed=True))).phase is MigrationPhase.SUCCEEDED


def test_a_failed_state_fails_the_migration_with_its_reason() -> None:
    decision = decide(migration("Running"), vmi(handed(failed=True, failure_reason="target QEMU died")))
    assert (decision.phase, decision.failure) == (MigrationPhase.FAILED, "target QEMU died")


def test_a_state_seen_past_a_phase_still_passes_through_it() -> None:
    state = handed(target_node_address="127.0.0.1:4444", start_timestamp="2026-12-02T06:00:00Z")
    decision = decide(migration("PreparingTarget"), vmi(state))
    assert (decision.passed, decision.phase) == ((MigrationPhase.TARGET_READY,), MigrationPhase.RUNNING)


def test_a_completed_state_seen_while_preparing_passes_through_every_later_phase() -> None:
    decision = decide(migration("PreparingTarget"), vmi(handed(completed=True)))
    assert decision.passed == (MigrationPhase.TARGET_READY, MigrationPhase.RUNNING)
    assert decision.phase is MigrationPhase.SUCCEEDED


def test_a_failure_seen_while_preparing_passes_no_phase() -> None:
    decision = decide(migration("PreparingTarget"), vmi(handed(failed=True, failure_reason="no target")))
    assert (decision.passed, decision.phase) == ((), MigrationPhase.FAILED)


def test_deleting_an_active_migration_requests_an_abort() -> None:
    decision = decide(migration("Running", deleting=True), vmi(handed()))
    assert decision.vmi_state == handed(abort_requested=True)


def through(m: VirtualMachineInstanceMigration, v: VirtualMachineInstance | None, others: Any = ()) -> Any:
    return decide_through(m, v, nodes=NODES, used={}, others=list(others), limits=MigrationLimits())


def test_a_new_migration_with_room_is_scheduled_and_handed_to_the_vmi_in_one_decision() -> None:
    decision = through(migration(), vmi())
    assert decision.passed == (MigrationPhase.SCHEDULING, MigrationPhase.SCHEDULED)
    assert (decision.phase, decision.vmi_state, decision.migration_state) == (
        MigrationPhase.PREPARING_TARGET,
        handed(),
        handed(),
    )


def test_a_new_migration_without_a_target_stops_in_scheduling_saying_why() -> None:
    m = VirtualMachineInstanceMigration.model_validate(
        {"metadata": {"uid": UID}, "spec": {"vmiName": "vm", "addedNodeSelector": {"zone": "x"}}}
    )
    decision = through(m, vmi())
    assert (decision.passed, decision.phase, decision.vmi_state) == ((MigrationPhase.SCHEDULING,), None, None)
    assert "didn't match Pod's node affinity/selector" in (decision.waiting or "")


def test_a_new_migration_over_the_cluster_limit_passes_no_phase() -> None:
    decision = through(migration(), vmi(), [migration("Running") for _ in range(5)])
    assert (decision.passed, decision.phase) == ((), None)


def test_a_migration_of_a_vmi_that_is_gone_fails() -> None:
    assert decide(migration(), None).phase is MigrationPhase.FAILED


def test_a_finished_migration_is_left_alone() -> None:
    assert decide(migration("Succeeded"), vmi()) == MigrationDecision()
