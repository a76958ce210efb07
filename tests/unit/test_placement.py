"""``rollout.placement``: whether the node a guest runs on still admits its placement, and how the VM
reports it (a pending change and ``PlacementViolated``, never ``RestartRequired``)."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.meta import ObjectMeta
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.apiserver.typed_kinds import VMAdmitter
from vmplane.rollout.placement import PLACEMENT_VIOLATED, placement_violation
from vmplane.rollout.plan import Plan
from vmplane.rollout.restarts import vm_state
from vmplane.rollout.vm_status import Observation, derive_status
from vmplane.testing.builders import boot, config, vm_spec

DRAIN = "kubevirt.io/drain"
NOW = "2026-12-02T10:00:00Z"
REQUIRED_ZONE_B = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]
        }
    }
}


def node(*taints: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "node01", "labels": {"kubevirt.io/schedulable": "true", **labels}},
        "spec": {"taints": list(taints)},
    }


def vmi(**placement: Any) -> VirtualMachineInstance:
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": placement,
            "status": {"phase": "Running", "nodeName": "node01"},
        }
    )


def violated_paths(running: VirtualMachineInstance, on: dict[str, Any]) -> list[str] | None:
    found = placement_violation(vmi=running, node=on, desired=None, drain_taint_key=DRAIN)
    return None if found is None else [p.path for p in found.pending]


@pytest.mark.parametrize(
    ("running", "on", "paths"),
    [
        pytest.param(
            vmi(nodeSelector={"zone": "b"}),
            node(zone="a"),
            ["spec.template.spec.nodeSelector"],
            id="selector",
        ),
        pytest.param(
            vmi(affinity=REQUIRED_ZONE_B), node(zone="a"), ["spec.template.spec.affinity"], id="affinity"
        ),
        pytest.param(
            vmi(),
            node({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
            ["spec.template.spec.tolerations"],
            id="untolerated-taint",
        ),
        pytest.param(
            vmi(nodeSelector={"zone": "b"}, affinity=REQUIRED_ZONE_B),
            node(zone="a"),
            ["spec.template.spec.nodeSelector", "spec.template.spec.affinity"],
            id="selector-and-affinity",
        ),
    ],
)
def test_a_node_the_placement_excludes_is_a_violation_of_each_excluding_field(
    running: VirtualMachineInstance, on: dict[str, Any], paths: list[str]
) -> None:
    assert violated_paths(running, on) == paths


@pytest.mark.parametrize(
    ("running", "on"),
    [
        pytest.param(vmi(nodeSelector={"zone": "a"}), node(zone="a"), id="selector-matches"),
        pytest.param(vmi(affinity=REQUIRED_ZONE_B), node(zone="b"), id="affinity-matches"),
        pytest.param(
            vmi(
                tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
            ),
            node({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
            id="taint-tolerated",
        ),
        pytest.param(vmi(), node({"key": "soft", "effect": "PreferNoSchedule"}), id="prefer-no-schedule"),
        pytest.param(
            vmi(), node({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}), id="cordoned"
        ),
        pytest.param(vmi(), node({"key": DRAIN, "effect": "NoSchedule"}), id="drain-taint"),
        pytest.param(vmi(), {"metadata": {"name": "node01", "labels": {}}}, id="not-schedulable-label"),
    ],
)
def test_a_node_that_admits_the_placement_is_no_violation(
    running: VirtualMachineInstance, on: dict[str, Any]
) -> None:
    assert violated_paths(running, on) is None


def test_an_unknown_node_is_no_violation() -> None:
    assert (
        placement_violation(
            vmi=vmi(nodeSelector={"zone": "b"}), node=None, desired=None, drain_taint_key=DRAIN
        )
        is None
    )


def test_the_pending_change_names_the_node_and_says_it_takes_effect_at_the_next_migration() -> None:
    found = placement_violation(
        vmi=vmi(nodeSelector={"zone": "b"}), node=node(zone="a"), desired=None, drain_taint_key=DRAIN
    )
    assert found is not None
    (change,) = found.pending
    assert (change.reason, change.running, change.desired, change.source.value) == (
        "PlacementViolatedByCurrentNode",
        "node01",
        {"zone": "b"},
        "template",
    )
    assert "takes effect at the next migration" in change.message


def vm() -> VirtualMachine:
    return VirtualMachine.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default", "generation": 4},
            "spec": {"runStrategy": "Always", "template": {"spec": {}}},
            "status": {"observedGeneration": 3},
        }
    )


def violated_status() -> Any:
    running = vmi(nodeSelector={"zone": "b"})
    found = placement_violation(vmi=running, node=node(zone="a"), desired=None, drain_taint_key=DRAIN)
    observation = Observation(running, Plan((), (), None, running.spec), False, NOW, placement=found)
    return derive_status(vm(), observation)


def test_a_violation_sets_placement_violated_and_a_pending_change_but_not_restart_required() -> None:
    status = violated_status()
    types = {c.type: c for c in status.conditions or ()}
    assert "RestartRequired" not in types
    condition = types[PLACEMENT_VIOLATED]
    assert (condition.status, condition.reason) == ("True", "PlacementViolatedByCurrentNode")
    assert [p.reason for p in status.pending_changes or ()] == ["PlacementViolatedByCurrentNode"]


def test_a_violation_leaves_the_generation_observed() -> None:
    assert violated_status().observed_generation == 4


def test_the_condition_and_pending_change_go_once_the_node_admits_the_placement() -> None:
    running = vmi(nodeSelector={"zone": "b"})
    before = vm().model_copy(update={"status": violated_status()})
    status = derive_status(before, Observation(running, Plan((), (), None, running.spec), False, NOW))
    assert PLACEMENT_VIOLATED not in {c.type for c in status.conditions or ()}
    assert status.pending_changes is None


def test_restart_approval_does_not_count_a_violation_as_pending() -> None:
    reported = vm().model_copy(update={"status": violated_status()})
    assert vm_state(reported, None, {}).pending == ()


class _OneNodeCluster:
    """Admission's view: LiveUpdate, the VM's guest running on node01 (zone a)."""

    def __init__(self, running: VirtualMachineInstance) -> None:
        self._vmi = running

    def configuration(self) -> KubeVirtConfiguration:
        return config(strategy="LiveUpdate")

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._vmi.to_wire()

    def lookup(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def migrations(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def node(self, name: str) -> dict[str, Any] | None:
        return node(zone="a") if name == "node01" else None


def test_a_dry_run_of_a_placement_change_shows_the_violation_it_would_cause() -> None:
    template = vm_spec()
    booted = boot(template, config(strategy="LiveUpdate"))
    running = VirtualMachineInstance(
        metadata=ObjectMeta(name="web", namespace="default", uid="u1"),
        spec=booted.spec,
        status=booted.status.model_copy(update={"node_name": "node01"}),
    )
    changed = template.model_copy(update={"node_selector": {"zone": "b"}})
    edited = VirtualMachine.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"runStrategy": "Always", "template": {"spec": changed.to_wire()}},
        }
    )
    admitter = VMAdmitter(cluster=_OneNodeCluster(running))
    status, live = admitter.project(edited, admitter.cluster.configuration(), None)
    assert [c["path"] for c in live] == ["spec.template.spec.nodeSelector"]
    assert [(p.path, p.reason) for p in status.pending_changes or ()] == [
        ("spec.template.spec.nodeSelector", "PlacementViolatedByCurrentNode")
    ]
    assert PLACEMENT_VIOLATED in {c.type for c in status.conditions or ()}
