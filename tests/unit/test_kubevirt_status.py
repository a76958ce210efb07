"""The KubeVirt object's status decision: the control plane's health as virt-operator reports it."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.controller.kubevirt_status import KUBEVIRT_VERSION, kubevirt_status, ready_nodes

T0, T1 = "2026-11-28T10:00:00Z", "2026-11-28T10:05:00Z"


def _kubevirt(generation: int = 1, status: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "kubevirt", "namespace": "kubevirt", "generation": generation}
    }
    if status is not None:
        obj["status"] = status
    return obj


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_with_a_ready_node_the_installation_is_deployed_and_available() -> None:
    status = kubevirt_status(kubevirt=_kubevirt(), ready=1, now=T0)
    assert status["phase"] == "Deployed"
    assert _conditions(status) == {
        "Available": ("True", "AllComponentsReady", "All components are ready."),
        "Progressing": ("False", "AllComponentsReady", "All components are ready."),
        "Degraded": ("False", "AllComponentsReady", "All components are ready."),
        "Created": ("True", "AllResourcesCreated", "All resources were created."),
    }


def test_without_a_ready_node_the_installation_is_degraded() -> None:
    status = kubevirt_status(kubevirt=_kubevirt(), ready=0, now=T0)
    assert _conditions(status)["Degraded"] == (
        "True",
        "NoReadyNode",
        "No node is Ready: virtual machines cannot be scheduled.",
    )


def test_the_status_reports_the_generation_and_version_it_observed() -> None:
    status = kubevirt_status(kubevirt=_kubevirt(generation=3), ready=1, now=T0)
    assert (status["observedGeneration"], status["observedKubeVirtVersion"]) == (3, KUBEVIRT_VERSION)


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    first = kubevirt_status(kubevirt=_kubevirt(), ready=1, now=T0)
    again = kubevirt_status(kubevirt=_kubevirt(status=first), ready=1, now=T1)
    assert again == first


def test_a_changed_condition_moves_its_transition_time() -> None:
    first = kubevirt_status(kubevirt=_kubevirt(), ready=1, now=T0)
    degraded = kubevirt_status(kubevirt=_kubevirt(status=first), ready=0, now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in degraded["conditions"]}
    assert times == {"Available": T0, "Progressing": T0, "Degraded": T1, "Created": T0}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([{"type": "Ready", "status": "True"}], 1),
        ([{"type": "Ready", "status": "False"}], 0),
        ([{"type": "Ready", "status": "Unknown"}], 0),
        ([{"type": "MemoryPressure", "status": "True"}], 0),
        ([], 0),
    ],
    ids=["ready", "not-ready", "unknown", "other-condition", "no-conditions"],
)
def test_ready_nodes_counts_nodes_whose_ready_condition_is_true(
    conditions: list[dict[str, str]], expected: int
) -> None:
    assert ready_nodes([{"status": {"conditions": conditions}}]) == expected


@pytest.mark.parametrize(
    "stored", [{"conditions": 3}, "x", {"conditions": ["a"]}], ids=["number", "string", "items"]
)
def test_a_malformed_stored_status_is_replaced_whole(stored: Any) -> None:
    status = kubevirt_status(kubevirt=_kubevirt(status=stored), ready=1, now=T0)
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {T0}


def test_a_node_with_a_malformed_status_is_not_ready() -> None:
    assert ready_nodes([{"status": "x"}, {"status": {"conditions": 1}}]) == 0
