"""The evacuation controller's pure decision: the drain taint, eviction strategies, limits."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.migratable import migrates_on_eviction
from vmplane.api.migration import VirtualMachineInstanceMigration
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.controller.evacuation_plan import (
    EVACUATION_MIGRATION_ANNOTATION,
    FULL_RETRY,
    WARNING_RETRY,
    EvacuationPlan,
    evacuation_migration,
    plan_evacuation,
)
from vmplane.store.base import JsonObject

DRAIN = {"key": "kubevirt.io/drain", "effect": "NoSchedule"}
DEFAULTS = KubeVirtConfiguration()


def node(*taints: dict[str, str]) -> JsonObject:
    return {"metadata": {"name": "node02"}, "spec": {"taints": list(taints)}}


def vmi(
    name: str,
    strategy: str | None = "LiveMigrate",
    *,
    migratable: bool = True,
    phase: str = "Running",
    deleting: bool = False,
    state: dict[str, Any] | None = None,
) -> VirtualMachineInstance:
    metadata: JsonObject = {"name": name, "namespace": "ns"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T06:00:00Z"
    status: JsonObject = {
        "phase": phase,
        "nodeName": "node02",
        "conditions": [{"type": "LiveMigratable", "status": "True" if migratable else "False"}],
    }
    if state is not None:
        status["migrationState"] = state
    spec: JsonObject = {"domain": {"devices": {}}}
    if strategy is not None:
        spec["evictionStrategy"] = strategy
    return VirtualMachineInstance.model_validate({"metadata": metadata, "spec": spec, "status": status})


def migration(vmi_name: str, phase: str | None = "Running") -> VirtualMachineInstanceMigration:
    body: JsonObject = {
        "metadata": {"name": f"m-{vmi_name}", "namespace": "ns"},
        "spec": {"vmiName": vmi_name},
    }
    if phase is not None:
        body["status"] = {"phase": phase}
    return VirtualMachineInstanceMigration.model_validate(body)


def config(**migrations: int | str) -> KubeVirtConfiguration:
    return KubeVirtConfiguration.model_validate({"migrations": migrations})


def plan(
    n: JsonObject,
    vmis: list[VirtualMachineInstance],
    migrations: list[VirtualMachineInstanceMigration] | None = None,
    cfg: KubeVirtConfiguration = DEFAULTS,
) -> EvacuationPlan:
    return plan_evacuation(n, vmis=vmis, migrations=migrations or [], config=cfg)


def test_a_node_without_the_drain_taint_is_left_alone() -> None:
    assert plan(node(), [vmi("a")]) == EvacuationPlan()


def test_a_drain_key_with_another_effect_is_not_the_drain_taint() -> None:
    assert plan(node({**DRAIN, "effect": "NoExecute"}), [vmi("a")]) == EvacuationPlan()


def test_the_drain_taint_migrates_live_migrate_vmis_whatever_its_value() -> None:
    assert plan(node({**DRAIN, "value": "anything"}), [vmi("a")]).migrate == (("ns", "a"),)


def test_the_configured_taint_key_is_the_drain_taint() -> None:
    custom = {"key": "example.com/evacuate", "effect": "NoSchedule"}
    cfg = config(nodeDrainTaintKey="example.com/evacuate")
    assert plan(node(custom), [vmi("a")], cfg=cfg).migrate == (("ns", "a"),)
    assert plan(node(DRAIN), [vmi("a")], cfg=cfg).migrate == ()


@pytest.mark.parametrize(
    ("strategy", "migratable", "moves"),
    [
        pytest.param("LiveMigrate", True, True, id="live-migrate"),
        pytest.param("LiveMigrateIfPossible", True, True, id="if-possible-migratable"),
        pytest.param("LiveMigrateIfPossible", False, False, id="if-possible-not-migratable"),
        pytest.param("None", True, False, id="none"),
        pytest.param("External", True, False, id="external"),
        pytest.param(None, True, False, id="unset-defaults-to-none"),
    ],
)
def test_the_eviction_strategy_decides_whether_a_vmi_moves(
    strategy: str | None, migratable: bool, moves: bool
) -> None:
    assert migrates_on_eviction(vmi("a", strategy, migratable=migratable), DEFAULTS) is moves


def test_the_clusters_eviction_strategy_applies_when_the_vmi_sets_none() -> None:
    cfg = KubeVirtConfiguration.model_validate({"evictionStrategy": "LiveMigrate"})
    assert plan(node(DRAIN), [vmi("a", None)], cfg=cfg).migrate == (("ns", "a"),)


def test_a_live_migrate_vmi_that_cannot_migrate_is_warned_about_not_migrated() -> None:
    result = plan(node(DRAIN), [vmi("a", migratable=False)])
    assert result == EvacuationPlan(not_migratable=(("ns", "a"),), retry_after=WARNING_RETRY)


@pytest.mark.parametrize(
    "skipped",
    [
        pytest.param(vmi("a", phase="Succeeded"), id="finished"),
        pytest.param(vmi("a", deleting=True), id="being-deleted"),
        pytest.param(vmi("a", state={"sourceNode": "node02", "targetNode": "node01"}), id="in-flight"),
        pytest.param(
            vmi("a", state={"sourceNode": "node02", "targetNode": "node01", "completed": True}),
            id="completed-not-handed-over",
        ),
    ],
)
def test_a_vmi_that_no_longer_runs_or_already_moves_gets_no_migration(
    skipped: VirtualMachineInstance,
) -> None:
    assert plan(node(DRAIN), [skipped]).migrate == ()


def test_a_vmi_with_an_unfinished_migration_gets_no_second_one() -> None:
    for phase in (None, "Pending", "Running"):
        assert plan(node(DRAIN), [vmi("a")], [migration("a", phase)]).migrate == ()


def test_a_vmi_whose_last_migration_failed_gets_a_new_one() -> None:
    failed = {"sourceNode": "node02", "targetNode": "node01", "failed": True}
    assert plan(node(DRAIN), [vmi("a", state=failed)], [migration("a", "Failed")]).migrate == (("ns", "a"),)


def test_a_vmi_that_came_here_by_a_migration_can_be_evacuated_again() -> None:
    arrived = {"sourceNode": "node01", "targetNode": "node02", "completed": True}
    assert plan(node(DRAIN), [vmi("a", state=arrived)], [migration("a", "Succeeded")]).migrate == (
        ("ns", "a"),
    )


def test_no_more_migrations_leave_the_node_than_its_outbound_limit() -> None:
    vmis = [vmi(name) for name in "abcd"]
    assert plan(node(DRAIN), vmis).migrate == (("ns", "a"), ("ns", "b"))
    running = [migration("a"), migration("b")]
    assert plan(node(DRAIN), vmis, running) == EvacuationPlan(retry_after=FULL_RETRY)


def test_the_clusters_limit_counts_migrations_from_every_node() -> None:
    elsewhere = [migration(f"other{i}") for i in range(4)]
    assert plan(node(DRAIN), [vmi("a"), vmi("b")], elsewhere).migrate == (("ns", "a"),)


def test_pending_migrations_hold_no_spot() -> None:
    pending = [migration(f"other{i}", "Pending") for i in range(5)]
    assert len(plan(node(DRAIN), [vmi("a"), vmi("b")], pending).migrate) == 2


def test_an_evacuation_migration_carries_upstreams_name_prefix_annotation_and_label() -> None:
    body = evacuation_migration("ns", "web", node="node02", suffix="x7k2q")
    assert body["metadata"]["name"] == "kubevirt-evacuation-x7k2q"
    assert body["metadata"]["generateName"] == "kubevirt-evacuation-"
    assert body["metadata"]["annotations"] == {EVACUATION_MIGRATION_ANNOTATION: "node02"}
    assert body["metadata"]["labels"] == {"kubevirt.io/vmi-name": "web"}
    assert body["spec"] == {"vmiName": "web"}
