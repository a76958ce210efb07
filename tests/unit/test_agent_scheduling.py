"""``scheduler.scheduling``: the Kubernetes scheduler's filters and messages, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.guest_resources import Resources, guest_request
from vmplane.api.scheduling import Affinity, Taint, Toleration
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.scheduler.scheduling import (
    AFFINITY_MISMATCH,
    NO_NODES,
    UNSCHEDULABLE_NODE,
    NodeInfo,
    choose_node,
    fits,
    tolerates,
    unschedulable_message,
)
from vmplane.testing.builders import vm_spec

BASE = {"kubevirt.io/schedulable": "true", "kubernetes.io/hostname": "n1"}


def node(name: str = "n1", *, taints: tuple[Taint, ...] = (), ready: Any = "True", **labels: str) -> NodeInfo:
    return NodeInfo(name=name, labels={**BASE, **labels}, taints=taints, ready=ready)


def required(*terms: dict[str, Any]) -> Affinity:
    return Affinity.model_validate(
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    )


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values) or None}]}


def field(operator: str, *values: str) -> dict[str, Any]:
    return {"matchFields": [{"key": "metadata.name", "operator": operator, "values": list(values)}]}


def taint(key: str, value: str = "", effect: Any = "NoSchedule") -> Taint:
    return Taint(key, value, effect)


def tol(**fields: Any) -> Toleration:
    return Toleration.model_validate(fields)


UNTOLERATED_GPU = "node(s) had untolerated taint {gpu: yes}"
FITS: dict[str, tuple[VirtualMachineInstanceSpec, NodeInfo, list[str]]] = {
    "plain": (vm_spec(), node(), []),
    "selector-match": (vm_spec(node_selector={"disk": "ssd"}), node(disk="ssd"), []),
    "selector-mismatch": (vm_spec(node_selector={"disk": "ssd"}), node(disk="hdd"), [AFFINITY_MISMATCH]),
    "selector-missing-label": (vm_spec(node_selector={"disk": "ssd"}), node(), [AFFINITY_MISMATCH]),
    "not-kubevirt-schedulable": (vm_spec(), NodeInfo(name="n1", labels={}), [AFFINITY_MISMATCH]),
    "in": (vm_spec(affinity=required(expr("zone", "In", "a", "b"))), node(zone="b"), []),
    "in-mismatch": (vm_spec(affinity=required(expr("zone", "In", "a"))), node(zone="b"), [AFFINITY_MISMATCH]),
    "in-missing": (vm_spec(affinity=required(expr("zone", "In", "a"))), node(), [AFFINITY_MISMATCH]),
    "notin": (vm_spec(affinity=required(expr("zone", "NotIn", "a"))), node(zone="b"), []),
    "notin-missing-label-matches": (vm_spec(affinity=required(expr("zone", "NotIn", "a"))), node(), []),
    "notin-mismatch": (
        vm_spec(affinity=required(expr("zone", "NotIn", "a"))),
        node(zone="a"),
        [AFFINITY_MISMATCH],
    ),
    "exists": (vm_spec(affinity=required(expr("gpu", "Exists"))), node(gpu=""), []),
    "exists-mismatch": (vm_spec(affinity=required(expr("gpu", "Exists"))), node(), [AFFINITY_MISMATCH]),
    "doesnotexist": (vm_spec(affinity=required(expr("gpu", "DoesNotExist"))), node(), []),
    "doesnotexist-mismatch": (
        vm_spec(affinity=required(expr("gpu", "DoesNotExist"))),
        node(gpu="1"),
        [AFFINITY_MISMATCH],
    ),
    "gt": (vm_spec(affinity=required(expr("cores", "Gt", "8"))), node(cores="16"), []),
    "gt-equal-fails": (
        vm_spec(affinity=required(expr("cores", "Gt", "8"))),
        node(cores="8"),
        [AFFINITY_MISMATCH],
    ),
    "gt-not-a-number": (
        vm_spec(affinity=required(expr("cores", "Gt", "8"))),
        node(cores="many"),
        [AFFINITY_MISMATCH],
    ),
    "lt": (vm_spec(affinity=required(expr("cores", "Lt", "8"))), node(cores="4"), []),
    "lt-missing": (vm_spec(affinity=required(expr("cores", "Lt", "8"))), node(), [AFFINITY_MISMATCH]),
    "terms-are-ored": (
        vm_spec(affinity=required(expr("zone", "In", "x"), expr("zone", "In", "b"))),
        node(zone="b"),
        [],
    ),
    "expressions-are-anded": (
        vm_spec(
            affinity=required(
                {
                    "matchExpressions": [
                        {"key": "zone", "operator": "In", "values": ["b"]},
                        {"key": "gpu", "operator": "Exists"},
                    ]
                }
            )
        ),
        node(zone="b"),
        [AFFINITY_MISMATCH],
    ),
    "empty-term-matches-nothing": (vm_spec(affinity=required({})), node(), [AFFINITY_MISMATCH]),
    "match-fields-name": (vm_spec(affinity=required(field("In", "n1"))), node(), []),
    "match-fields-name-mismatch": (
        vm_spec(affinity=required(field("In", "n2"))),
        node(),
        [AFFINITY_MISMATCH],
    ),
    "match-fields-notin": (vm_spec(affinity=required(field("NotIn", "n2"))), node(), []),
    "selector-and-affinity-both-required": (
        vm_spec(node_selector={"disk": "ssd"}, affinity=required(expr("zone", "In", "b"))),
        node(zone="b"),
        [AFFINITY_MISMATCH],
    ),
    "noschedule-taint": (vm_spec(), node(taints=(taint("gpu", "yes"),)), [UNTOLERATED_GPU]),
    "noexecute-taint": (vm_spec(), node(taints=(taint("gpu", "yes", "NoExecute"),)), [UNTOLERATED_GPU]),
    "prefernoschedule-is-ignored": (vm_spec(), node(taints=(taint("gpu", "yes", "PreferNoSchedule"),)), []),
    "tolerated-equal": (
        vm_spec(tolerations=[tol(key="gpu", operator="Equal", value="yes", effect="NoSchedule")]),
        node(taints=(taint("gpu", "yes"),)),
        [],
    ),
    "tolerated-exists": (
        vm_spec(tolerations=[tol(key="gpu", operator="Exists")]),
        node(taints=(taint("gpu", "yes"),)),
        [],
    ),
    "only-the-first-untolerated-taint": (
        vm_spec(),
        node(taints=(taint("gpu", "yes"), taint("ssd"))),
        [UNTOLERATED_GPU],
    ),
    "not-ready": (
        vm_spec(),
        node(ready="False"),
        ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"],
    ),
    "unreachable": (
        vm_spec(),
        node(ready="Unknown"),
        ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"],
    ),
    "cordoned": (vm_spec(), NodeInfo(name="n1", labels=BASE, unschedulable=True), [UNSCHEDULABLE_NODE]),
    "cordoned-tolerated": (
        vm_spec(tolerations=[tol(key="node.kubernetes.io/unschedulable", operator="Exists")]),
        NodeInfo(name="n1", labels=BASE, unschedulable=True),
        [],
    ),
    "every-filter-in-order": (
        vm_spec(node_selector={"disk": "ssd"}),
        NodeInfo(name="n1", labels=BASE, unschedulable=True, taints=(taint("gpu", "yes"),)),
        [UNSCHEDULABLE_NODE, UNTOLERATED_GPU, AFFINITY_MISMATCH],
    ),
}


@pytest.mark.parametrize(("spec", "candidate", "reasons"), FITS.values(), ids=FITS.keys())
def test_fits(spec: VirtualMachineInstanceSpec, candidate: NodeInfo, reasons: list[str]) -> None:
    assert fits(spec, candidate) == reasons


GPU = Taint("gpu", "yes", "NoSchedule")
TOLERATES: dict[str, tuple[dict[str, Any], bool]] = {
    "equal": ({"key": "gpu", "operator": "Equal", "value": "yes"}, True),
    "equal-wrong-value": ({"key": "gpu", "operator": "Equal", "value": "no"}, False),
    "default-operator-is-equal": ({"key": "gpu", "value": "yes"}, True),
    "exists-any-value": ({"key": "gpu", "operator": "Exists"}, True),
    "exists-empty-key-tolerates-everything": ({"operator": "Exists"}, True),
    "effect-must-match": ({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}, False),
    "effect-matches": ({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}, True),
    "other-key": ({"key": "ssd", "operator": "Exists"}, False),
}


@pytest.mark.parametrize(("toleration", "expected"), TOLERATES.values(), ids=TOLERATES.keys())
def test_tolerates(toleration: dict[str, Any], expected: bool) -> None:
    assert tolerates(tol(**toleration), GPU) is expected


def test_node_info_from_a_node_object() -> None:
    obj = {
        "metadata": {"name": "n1", "labels": {"a": "b"}},
        "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoExecute"}], "unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert NodeInfo.from_wire(obj) == NodeInfo(
        name="n1",
        labels={"a": "b"},
        taints=(Taint("gpu", "yes", "NoExecute"),),
        unschedulable=True,
        ready="False",
    )
    assert fits(vm_spec(), obj) == fits(vm_spec(), NodeInfo.from_wire(obj))


def test_unschedulable_message_is_the_schedulers() -> None:
    spec = vm_spec(node_selector={"disk": "ssd"})
    assert unschedulable_message(spec, [node()]) == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
    nodes = [node("a"), node("b", taints=(GPU,)), node("c", disk="ssd", taints=(GPU,))]
    # Each node counts once, under its first failing filter; parts sorted as strings.
    assert unschedulable_message(spec, nodes) == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 node(s) had untolerated taint {gpu: yes}."
    )
    assert unschedulable_message(spec, []) == NO_NODES


def test_choose_node_prefers_weighted_preferences_then_names() -> None:
    nodes = [node("c", zone="a"), node("b", zone="b"), node("a", disk="hdd", taints=(GPU,))]
    assert choose_node(vm_spec(), nodes) == "b"
    preferred = Affinity.model_validate(
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": expr("zone", "In", "a")}
                ]
            }
        }
    )
    assert choose_node(vm_spec(affinity=preferred), nodes) == "c"
    assert choose_node(vm_spec(node_selector={"disk": "ssd"}), nodes) is None
    assert choose_node(vm_spec(), []) is None


# ------------------------------------------------------------------------------------------ capacity

GI = 2**30
ROOMY = Resources(4000, 8 * GI)


def sized(name: str, allocatable: Resources | None = ROOMY, **labels: str) -> NodeInfo:
    return NodeInfo(name=name, labels={**BASE, **labels}, ready="True", allocatable=allocatable)


def test_a_node_without_room_for_the_guest_memory_does_not_fit() -> None:
    full = {"n1": Resources(0, 7 * GI + 512 * 2**20)}
    assert fits(vm_spec(guest="1Gi"), sized("n1"), used=full["n1"]) == ["Insufficient memory"]
    assert choose_node(vm_spec(guest="1Gi"), [sized("n1")], used=full) is None


def test_cpu_and_memory_are_both_reported_when_both_are_short() -> None:
    tight = Resources(50, GI)
    assert fits(vm_spec(guest="2Gi"), sized("n1", tight)) == ["Insufficient cpu", "Insufficient memory"]


def test_a_node_that_declares_no_allocatable_is_not_limited() -> None:
    assert fits(vm_spec(guest="64Gi", sockets=64), sized("n1", None)) == []


def test_the_fit_error_counts_each_node_under_its_first_failing_filter() -> None:
    spec = vm_spec(guest="4Gi", node_selector={"disk": "ssd"})
    nodes = [sized("a", Resources(4000, 2 * GI), disk="ssd"), sized("b"), sized("c", Resources(0, 0))]
    assert unschedulable_message(spec, nodes) == (
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_a_node_short_of_both_counts_under_both_reasons() -> None:
    nodes = [sized("a", Resources(0, 0)), sized("b", Resources(4000, 0))]
    assert unschedulable_message(vm_spec(), nodes) == (
        "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."
    )


def test_equal_nodes_are_filled_evenly_least_allocated_first() -> None:
    nodes = [sized("n1"), sized("n2"), sized("n3")]
    used: dict[str, Resources] = {}
    placed = []
    for _ in range(6):
        chosen = choose_node(vm_spec(guest="1Gi"), nodes, used=used)
        assert chosen is not None
        placed.append(chosen)
        used[chosen] = used.get(chosen, Resources()) + guest_request(vm_spec(guest="1Gi"))
    assert placed == ["n1", "n2", "n3", "n1", "n2", "n3"]


def test_preferred_affinity_outweighs_free_room() -> None:
    preferred = Affinity.model_validate(
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": expr("zone", "In", "a")}
                ]
            }
        }
    )
    nodes = [sized("busy", zone="a"), sized("idle", zone="b")]
    used = {"busy": Resources(3000, 6 * GI)}
    assert choose_node(vm_spec(affinity=preferred), nodes, used=used) == "busy"
    assert choose_node(vm_spec(), nodes, used=used) == "idle"


def test_node_info_reads_the_allocatable() -> None:
    obj = {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "1900m", "memory": "1Gi"}}}
    assert NodeInfo.from_wire(obj).allocatable == Resources(1900, GI)
