"""Whether a node admits a VMI's placement: ``nodeSelector``, required node affinity, tolerations. Pure.

These are the Kubernetes scheduler's NodeAffinity and TaintToleration predicates. They live here,
below both the scheduler (which places VMIs and picks migration targets with them) and the rollout
planner (which tells whether the node a guest runs on still admits the placement a live change gave
it), so the two cannot disagree about what a node admits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vmplane.api.scheduling import (
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Taint,
    Toleration,
)
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "REPELLING_EFFECTS",
    "affinity_matches",
    "selector_matches",
    "term_matches",
    "tolerated",
    "tolerates",
]

#: The taint effects that keep a workload off a node (``PreferNoSchedule`` only lowers its score).
REPELLING_EFFECTS: frozenset[str] = frozenset({"NoSchedule", "NoExecute"})


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``: empty effect or key match any, ``Exists`` any value."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return (toleration.value or "") == taint.value


def tolerated(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """Whether any of ``tolerations`` tolerates ``taint``."""
    return any(tolerates(t, taint) for t in tolerations)


def _requirement_holds(req: NodeSelectorRequirement, value: str | None) -> bool:
    values = req.values or []
    match req.operator:
        case "In":
            return value is not None and value in values
        case "NotIn":
            return value is None or value not in values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
    # Gt / Lt: both sides must be integers (labels.Requirement.Matches parses them as int64).
    if value is None or len(values) != 1:
        return False
    try:
        number, bound = int(value), int(values[0])
    except ValueError:
        return False
    return number > bound if req.operator == "Gt" else number < bound


def term_matches(term: NodeSelectorTerm, *, name: str, labels: Mapping[str, str]) -> bool:
    """Whether the node ``name`` with ``labels`` satisfies every requirement of ``term``."""
    expressions, fields = term.match_expressions or [], term.match_fields or []
    if not expressions and not fields:
        return False  # an empty term matches no node
    # ``matchFields`` supports exactly one field, ``metadata.name``.
    node_fields = {"metadata.name": name}
    return all(_requirement_holds(r, labels.get(r.key)) for r in expressions) and all(
        _requirement_holds(r, node_fields.get(r.key)) for r in fields
    )


def selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every label of the node ``selector``."""
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def affinity_matches(spec: VirtualMachineInstanceSpec, *, name: str, labels: Mapping[str, str]) -> bool:
    """Whether the node satisfies the required node affinity (any of its terms; none: any node)."""
    affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    if required is None:
        return True
    return any(term_matches(term, name=name, labels=labels) for term in required.node_selector_terms)
