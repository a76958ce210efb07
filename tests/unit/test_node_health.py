"""``controller.node_health``: when a silent node is unreachable, when its VMIs are given up, and
what the Node and its VMIs then say. The timing runs on a monotonic clock (``Ticks``); what is
written is stamped from a ``FakeClock``."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.controller.node_health import (
    NODE_STATUS_UNKNOWN,
    NODE_STATUS_UNKNOWN_MESSAGE,
    HealthConfig,
    judge,
    reachable_node,
    seen,
    unreachable_node,
    unreachable_vmi,
)
from vmplane.testing.clock import FakeClock

CONFIG = HealthConfig()  # 40 s grace, 30 s fence timeout, 5 s margin


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_node_renewing_its_lease_stays_reachable() -> None:
    clock = Ticks()
    renewal = seen(None, "t0", clock())
    for step in range(10):
        clock.advance(10)
        renewal = seen(renewal, f"t{step + 1}", clock())
        assert judge(renewal, clock(), CONFIG).reachable


def test_a_node_silent_for_the_grace_period_is_unreachable_and_fenced_at_the_deadline() -> None:
    clock = Ticks()
    renewal = seen(None, "t0", clock())
    clock.advance(39.9)
    assert judge(renewal, clock(), CONFIG).reachable
    clock.advance(0.1)
    verdict = judge(renewal, clock(), CONFIG)
    assert (verdict.reachable, verdict.fenced) == (False, True)  # 40 s >= max(40, 30 + 5)


def test_the_same_renew_time_read_again_is_no_renewal() -> None:
    clock = Ticks()
    first = seen(None, "t0", clock())
    clock.advance(25)
    assert seen(first, "t0", clock()) is first
    assert seen(first, "t1", clock()).at == clock()


def test_a_node_first_seen_gets_a_full_grace_period_whatever_its_lease_says() -> None:
    clock = Ticks()
    renewal = seen(None, "2020-01-01T00:00:00.000000Z", clock())
    assert judge(renewal, clock(), CONFIG).reachable


def test_vmis_are_given_up_only_after_the_fencing_deadline() -> None:
    config = HealthConfig(grace_period=40, fence_timeout=38, fence_margin=5)
    clock = Ticks()
    renewal = seen(None, "t0", clock())
    clock.advance(40)
    verdict = judge(renewal, clock(), config)
    assert (verdict.reachable, verdict.fenced, verdict.recheck_after) == (False, False, 3)
    clock.advance(3)
    assert judge(renewal, clock(), config).fenced


def test_recheck_comes_back_at_the_next_deadline() -> None:
    clock = Ticks()
    renewal = seen(None, "t0", clock())
    clock.advance(15)
    assert judge(renewal, clock(), CONFIG).recheck_after == 25
    clock.advance(30)
    assert judge(renewal, clock(), CONFIG).recheck_after is None


@pytest.mark.parametrize(
    ("grace", "fence"), [pytest.param(40, 40, id="equal"), pytest.param(30, 40, id="longer"), (40, 0)]
)
def test_the_fence_timeout_must_be_shorter_than_the_grace_period(grace: float, fence: float) -> None:
    with pytest.raises(ValueError, match="shorter than"):
        HealthConfig(grace_period=grace, fence_timeout=fence)


def node(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1"},
        "spec": spec,
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "x"},
            ]
        },
    }


def test_an_unreachable_node_has_every_condition_unknown_and_both_unreachable_taints() -> None:
    clock = FakeClock()
    marked = unreachable_node(node(taints=[{"key": "gpu", "effect": "NoSchedule"}]), clock())
    assert {(c["type"], c["status"], c["reason"], c["message"]) for c in marked["status"]["conditions"]} == {
        ("MemoryPressure", "Unknown", NODE_STATUS_UNKNOWN, NODE_STATUS_UNKNOWN_MESSAGE),
        ("Ready", "Unknown", NODE_STATUS_UNKNOWN, "Kubelet stopped posting node status."),
    }
    assert marked["spec"]["taints"] == [
        {"key": "gpu", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-11-28T10:00:00Z"},
    ]


def test_marking_an_unreachable_node_again_changes_nothing() -> None:
    clock = FakeClock()
    marked = unreachable_node(node(), clock())
    clock.advance(60)
    assert unreachable_node(marked, clock()) == marked


def test_a_node_back_loses_only_the_unreachable_taints() -> None:
    marked = unreachable_node(node(taints=[{"key": "gpu", "effect": "NoSchedule"}]), FakeClock()())
    assert reachable_node(marked)["spec"] == {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}
    assert "taints" not in reachable_node(unreachable_node(node(), FakeClock()()))["spec"]
    assert reachable_node(node()) == node()


def vmi(phase: str, finalizers: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "vm1", "namespace": "default", "finalizers": finalizers},
        "status": {"phase": phase, "nodeName": "n1"},
    }


def test_a_running_vmi_of_a_fenced_node_fails_node_unreachable_and_loses_the_machine_finalizer() -> None:
    status, finalizers = unreachable_vmi(vmi("Running", [MACHINE_FINALIZER, "other"]), FakeClock()())
    assert status is not None
    assert (status["phase"], status["reason"]) == ("Failed", "NodeUnreachable")
    assert finalizers == ["other"]


def test_a_final_vmi_of_a_fenced_node_keeps_its_status() -> None:
    assert unreachable_vmi(vmi("Succeeded", []), FakeClock()()) == (None, None)
