"""What ``vmplane drain`` does to a node and to each of its VMIs, and what ``uncordon`` undoes."""

from __future__ import annotations

import pytest

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.cli.drain_plan import DRAIN_TAINT_VALUE, DrainAction, cordoned, drain_step, uncordoned
from vmplane.store.base import JsonObject

KEY = "kubevirt.io/drain"
OURS = {"key": KEY, "value": DRAIN_TAINT_VALUE, "effect": "NoSchedule"}
DEFAULTS = KubeVirtConfiguration()


def node(**spec: object) -> JsonObject:
    return {"metadata": {"name": "node02", "resourceVersion": "7"}, "spec": dict(spec)}


def vmi(
    strategy: str, *, migratable: bool = True, phase: str = "Running", message: str = ""
) -> VirtualMachineInstance:
    condition = {"type": "LiveMigratable", "status": "True" if migratable else "False"}
    if message:
        condition["message"] = message
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"domain": {"devices": {}}, "evictionStrategy": strategy},
            "status": {"phase": phase, "nodeName": "node02", "conditions": [condition]},
        }
    )


def test_cordoning_sets_unschedulable_and_adds_the_drain_taint_marked_as_ours() -> None:
    other = {"key": "example.com/gpu", "effect": "NoSchedule"}
    result = cordoned(node(taints=[other]), KEY)
    assert result is not None
    assert result["spec"] == {"unschedulable": True, "taints": [other, OURS]}
    assert result["metadata"]["resourceVersion"] == "7"


def test_cordoning_a_node_already_drained_changes_nothing() -> None:
    assert cordoned(node(unschedulable=True, taints=[OURS]), KEY) is None


def test_cordoning_keeps_a_drain_taint_someone_else_put_without_adding_ours() -> None:
    theirs = {"key": KEY, "effect": "NoSchedule"}
    result = cordoned(node(taints=[theirs]), KEY)
    assert result is not None
    assert result["spec"]["taints"] == [theirs]


def test_uncordoning_removes_unschedulable_and_only_our_drain_taint() -> None:
    other = {"key": "example.com/gpu", "effect": "NoSchedule"}
    result = uncordoned(node(unschedulable=True, taints=[other, OURS]), KEY)
    assert result is not None
    assert result["spec"] == {"taints": [other]}


def test_uncordoning_leaves_a_drain_taint_someone_else_put() -> None:
    theirs = {"key": KEY, "effect": "NoSchedule"}
    result = uncordoned(node(unschedulable=True, taints=[theirs]), KEY)
    assert result is not None
    assert result["spec"] == {"taints": [theirs]}


def test_uncordoning_a_schedulable_node_changes_nothing() -> None:
    assert uncordoned(node(), KEY) is None


@pytest.mark.parametrize(
    ("target", "action"),
    [
        pytest.param(vmi("LiveMigrate"), DrainAction.MIGRATE, id="live-migrate"),
        pytest.param(vmi("LiveMigrateIfPossible"), DrainAction.MIGRATE, id="if-possible-migratable"),
        pytest.param(
            vmi("LiveMigrateIfPossible", migratable=False), DrainAction.STOP, id="if-possible-stuck"
        ),
        pytest.param(vmi("None"), DrainAction.STOP, id="none"),
        pytest.param(vmi("LiveMigrate", migratable=False), DrainAction.WAIT, id="live-migrate-stuck"),
        pytest.param(vmi("External"), DrainAction.WAIT, id="external"),
        pytest.param(vmi("LiveMigrate", phase="Failed"), DrainAction.STOP, id="finished"),
    ],
)
def test_the_eviction_strategy_decides_each_vmis_step(
    target: VirtualMachineInstance, action: DrainAction
) -> None:
    assert drain_step(target, config=DEFAULTS, run_strategy="Always").action is action


def test_a_stuck_live_migrate_vmi_says_why_it_cannot_move() -> None:
    step = drain_step(
        vmi("LiveMigrate", migratable=False, message="PVC x is not shared"),
        config=DEFAULTS,
        run_strategy=None,
    )
    assert step.message == "cannot be evicted (evictionStrategy LiveMigrate): PVC x is not shared"


@pytest.mark.parametrize(
    ("run_strategy", "after"),
    [
        pytest.param("Always", "its VM starts it again on another node (runStrategy Always)", id="always"),
        pytest.param("Manual", "its VM leaves it stopped (runStrategy Manual)", id="manual"),
        pytest.param(None, "it has no VM: it is gone", id="no-vm"),
    ],
)
def test_a_stopped_vmi_says_what_its_vm_does_next(run_strategy: str | None, after: str) -> None:
    step = drain_step(vmi("None"), config=DEFAULTS, run_strategy=run_strategy)
    assert step.message == f"stopping (evictionStrategy None): {after}"
