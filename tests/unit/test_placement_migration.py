"""``rollout.placement_migration``: an opted-in guest on a node its placement excludes gets one
migration at a time; without the opt-in, none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vmplane.api.migration import VirtualMachineInstanceMigration
from vmplane.api.timestamps import timestamp
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.placement import PlacementViolation, placement_violation
from vmplane.rollout.placement_migration import (
    MIGRATE_ON_PLACEMENT_CHANGE,
    PLACEMENT_MIGRATION,
    RETRY_AFTER_FAILURE,
    opted_in,
    placement_migration,
    withdrawn,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def vmi(**status: Any) -> VirtualMachineInstance:
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"nodeSelector": {"zone": "b"}},
            "status": {"phase": "Running", "nodeName": "node01", **status},
        }
    )


def violation(of: VirtualMachineInstance) -> PlacementViolation:
    node = {"metadata": {"name": "node01", "labels": {"zone": "a"}}}
    found = placement_violation(vmi=of, node=node, desired=None, drain_taint_key="kubevirt.io/drain")
    assert found is not None
    return found


def migration(
    name: str, phase: str | None, *, at: datetime = NOW, ours: bool = True
) -> VirtualMachineInstanceMigration:
    status = {
        "phase": phase,
        "phaseTransitionTimestamps": [{"phase": phase, "phaseTransitionTimestamp": timestamp(at)}],
    }
    return VirtualMachineInstanceMigration.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "annotations": {PLACEMENT_MIGRATION: "u1"} if ours else {},
            },
            "spec": {"vmiName": "web"},
            "status": status if phase else None,
        }
    )


def decide(
    running: VirtualMachineInstance, *migrations: VirtualMachineInstanceMigration, opted: bool = True
) -> Any:
    return placement_migration(
        vmi=running, violation=violation(running), opted=opted, migrations=list(migrations), now=NOW
    )


def test_the_annotation_on_the_vm_or_the_kubevirt_object_opts_in() -> None:
    yes = {MIGRATE_ON_PLACEMENT_CHANGE: "true"}
    assert (
        opted_in(yes, None),
        opted_in(None, yes),
        opted_in({MIGRATE_ON_PLACEMENT_CHANGE: "false"}, {}),
    ) == (
        True,
        True,
        False,
    )


def test_an_opted_in_violation_creates_a_migration_of_the_vmi() -> None:
    created = decide(vmi()).create
    assert created["spec"] == {"vmiName": "web"}
    assert created["metadata"]["name"] == "web-placement-1"
    assert created["metadata"]["labels"] == {"kubevirt.io/vmi-name": "web"}
    assert created["metadata"]["annotations"] == {PLACEMENT_MIGRATION: "u1"}


def test_without_the_opt_in_no_migration_is_created() -> None:
    assert decide(vmi(), opted=False).create is None


def test_no_migration_is_created_while_one_of_the_vmi_is_active() -> None:
    assert decide(vmi(), migration("web-placement-1", "Scheduling", ours=False)).create is None


def test_no_migration_is_created_while_the_guest_is_still_handed_over() -> None:
    state = {"sourceNode": "node01", "targetNode": "node02", "completed": True}
    assert decide(vmi(migrationState=state), migration("web-placement-1", "Succeeded")).create is None


def test_a_not_migratable_vmi_gets_no_migration() -> None:
    blocked = vmi(
        conditions=[{"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable"}]
    )
    assert decide(blocked).create is None


def test_a_failed_attempt_is_retried_after_the_back_off_under_a_new_name() -> None:
    recent = decide(vmi(), migration("web-placement-1", "Failed", at=NOW - timedelta(seconds=10)))
    assert recent.create is None
    assert recent.retry_after == RETRY_AFTER_FAILURE - 10
    later = decide(
        vmi(), migration("web-placement-1", "Failed", at=NOW - timedelta(seconds=RETRY_AFTER_FAILURE))
    )
    assert later.create["metadata"]["name"] == "web-placement-2"


def test_once_the_node_admits_the_placement_only_unscheduled_placement_migrations_are_withdrawn() -> None:
    found = withdrawn(
        vmi=vmi(),
        migrations=[
            migration("web-placement-1", "Scheduling"),
            migration("web-placement-2", None),
            migration("web-placement-3", "Running"),
            migration("move", "Pending", ours=False),
        ],
    )
    assert found == ["web-placement-1", "web-placement-2"]
