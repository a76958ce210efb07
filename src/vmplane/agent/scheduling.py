"""Which nodes a VMI may run on: ``nodeSelector``, required node affinity and taints. Pure.

The rules and the "didn't match" wording follow the Kubernetes scheduler's, so a VMI that cannot be
placed explains itself as a Pod would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vmplane.api.scheduling import NodeSelectorRequirement, NodeSelectorTerm, Toleration
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = ["choose_node", "fits", "unschedulable_message"]

AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_NODE = "node(s) were unschedulable"
_EFFECTS_THAT_REPEL = ("NoSchedule", "NoExecute")


def _requirement_holds(req: NodeSelectorRequirement, value: str | None) -> bool:
    values = req.values or []
    if req.operator == "In":
        return value is not None and value in values
    if req.operator == "NotIn":
        return value is None or value not in values
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if value is None or len(values) != 1:
        return False
    try:
        number, bound = int(value), int(values[0])
    except ValueError:
        return False
    return number > bound if req.operator == "Gt" else number < bound


def _term_holds(term: NodeSelectorTerm, labels: dict[str, str], name: str) -> bool:
    expressions = term.match_expressions or []
    fields = term.match_fields or []
    if not expressions and not fields:
        return False  # an empty term matches no node, as in Kubernetes
    return all(_requirement_holds(r, labels.get(r.key)) for r in expressions) and all(
        _requirement_holds(r, name if r.key == "metadata.name" else None) for r in fields
    )


def _tolerates(tolerations: Sequence[Toleration], taint: dict[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.effect and toleration.effect != taint.get("effect"):
            continue
        if toleration.operator == "Exists":
            if not toleration.key or toleration.key == taint.get("key"):
                return True
        elif toleration.key == taint.get("key") and (toleration.value or "") == (taint.get("value") or ""):
            return True
    return False


def fits(spec: VirtualMachineInstanceSpec, node: dict[str, Any]) -> list[str]:
    """Why ``node`` cannot run a VMI with ``spec`` (empty when it can)."""
    meta = node.get("metadata", {})
    labels: dict[str, str] = meta.get("labels") or {}
    name = meta.get("name", "")
    reasons: list[str] = []
    if node.get("spec", {}).get("unschedulable"):
        reasons.append(UNSCHEDULABLE_NODE)
    selector_ok = all(labels.get(k) == v for k, v in (spec.node_selector or {}).items())
    affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    affinity_ok = required is None or any(_term_holds(t, labels, name) for t in required.node_selector_terms)
    if not (selector_ok and affinity_ok):
        reasons.append(AFFINITY_MISMATCH)
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in _EFFECTS_THAT_REPEL and not _tolerates(spec.tolerations or [], taint):
            reasons.append(f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}")
    return reasons


def choose_node(spec: VirtualMachineInstanceSpec, nodes: Sequence[dict[str, Any]]) -> str | None:
    """The first node (by name) that fits, or None."""
    for node in sorted(nodes, key=lambda n: n.get("metadata", {}).get("name", "")):
        if not fits(spec, node):
            return str(node["metadata"]["name"])
    return None


def unschedulable_message(spec: VirtualMachineInstanceSpec, nodes: Sequence[dict[str, Any]]) -> str:
    """``0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.``"""
    counts: dict[str, int] = {}
    for node in nodes:
        for reason in fits(spec, node):
            counts[reason] = counts.get(reason, 0) + 1
    details = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    return f"0/{len(nodes)} nodes are available: {details or 'no nodes registered'}."
