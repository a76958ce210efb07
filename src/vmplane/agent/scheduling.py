"""Which nodes a VMI may run on: the Kubernetes scheduler's filters, as pure functions.

A VMI is placed as its virt-launcher Pod would be: ``nodeSelector`` (plus the implicit
``kubevirt.io/schedulable=true`` every launcher Pod carries), required node affinity, and taints with
``NoSchedule``/``NoExecute`` effects that its tolerations do not tolerate (including the taints
Kubernetes puts on cordoned and not-ready nodes). Reasons and the summary message are the
scheduler's own words, so ``kubectl describe`` reads as it would for a Pod.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vmplane.api.scheduling import NodeSelectorRequirement, NodeSelectorTerm, Toleration
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "AFFINITY_MISMATCH",
    "NOT_READY_TAINT",
    "NO_NODES",
    "SCHEDULABLE_LABEL",
    "UNREACHABLE_TAINT",
    "UNSCHEDULABLE_NODE",
    "UNSCHEDULABLE_TAINT",
    "NodeInfo",
    "Taint",
    "choose_node",
    "fits",
    "tolerates",
    "unschedulable_message",
    "untolerated_taint",
]

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

#: The label virt-handler puts on nodes that can run VMIs; every launcher Pod selects it.
SCHEDULABLE_LABEL = "kubevirt.io/schedulable"
# The scheduler's reasons (k8s.io/kubernetes/pkg/scheduler/framework/plugins).
AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_NODE = "node(s) were unschedulable"
NO_NODES = "no nodes available to schedule pods"
_REPELLING: frozenset[str] = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint (``spec.taints[]``)."""

    key: str
    value: str = ""
    effect: TaintEffect = "NoSchedule"

    def to_wire(self) -> dict[str, str]:
        """As in a Node's ``spec.taints``."""
        wire = {"key": self.key, "effect": self.effect}
        if self.value:
            wire["value"] = self.value
        return wire

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Taint:
        """From a Node's ``spec.taints[]`` entry."""
        return cls(
            key=obj.get("key", ""), value=obj.get("value", "") or "", effect=obj.get("effect", "NoSchedule")
        )


# What the node lifecycle controller and ``kubectl cordon`` put on nodes (TaintNodesByCondition).
UNSCHEDULABLE_TAINT = Taint("node.kubernetes.io/unschedulable")
NOT_READY_TAINT = Taint("node.kubernetes.io/not-ready")
UNREACHABLE_TAINT = Taint("node.kubernetes.io/unreachable")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the filters read of a Node. ``ready`` is its Ready condition (None when it has none)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: Literal["True", "False", "Unknown"] | None = None

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> NodeInfo:
        """From a ``v1`` Node object."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ready = next(
            (c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"), None
        )
        return cls(
            name=obj.get("metadata", {}).get("name", ""),
            labels=dict(obj.get("metadata", {}).get("labels") or {}),
            taints=tuple(Taint.from_wire(t) for t in spec.get("taints") or ()),
            unschedulable=bool(spec.get("unschedulable")),
            ready=ready if ready in ("True", "False", "Unknown") else None,
        )


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``: empty effect or key match any, ``Exists`` any value."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return (toleration.value or "") == taint.value


def _tolerated(tolerations: Sequence[Toleration], taint: Taint) -> bool:
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


def _term_matches(term: NodeSelectorTerm, node: NodeInfo) -> bool:
    expressions, fields = term.match_expressions or [], term.match_fields or []
    if not expressions and not fields:
        return False  # an empty term matches no node
    # ``matchFields`` supports exactly one field, ``metadata.name``.
    node_fields = {"metadata.name": node.name}
    return all(_requirement_holds(r, node.labels.get(r.key)) for r in expressions) and all(
        _requirement_holds(r, node_fields.get(r.key)) for r in fields
    )


def _affinity_matches(spec: VirtualMachineInstanceSpec, node: NodeInfo) -> bool:
    selector = {SCHEDULABLE_LABEL: "true", **(spec.node_selector or {})}
    if any(node.labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.node_selector_terms)


def _condition_taints(node: NodeInfo) -> tuple[Taint, ...]:
    if node.ready == "False":
        return (NOT_READY_TAINT,)
    if node.ready == "Unknown":
        return (UNREACHABLE_TAINT,)
    return ()


def untolerated_taint(taint: Taint) -> str:
    """The TaintToleration filter's reason for ``taint``."""
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


def fits(spec: VirtualMachineInstanceSpec, node: NodeInfo | Mapping[str, Any]) -> list[str]:
    """Why ``spec`` cannot run on ``node``, in the scheduler's filter order; empty when it fits."""
    info = node if isinstance(node, NodeInfo) else NodeInfo.from_wire(node)
    tolerations = spec.tolerations or []
    reasons = []
    if info.unschedulable and not _tolerated(tolerations, UNSCHEDULABLE_TAINT):
        reasons.append(UNSCHEDULABLE_NODE)
    for taint in (*info.taints, *_condition_taints(info)):
        if taint.effect in _REPELLING and not _tolerated(tolerations, taint):
            reasons.append(untolerated_taint(taint))
            break  # the filter reports the first untolerated taint only
    if not _affinity_matches(spec, info):
        reasons.append(AFFINITY_MISMATCH)
    return reasons


def _preference(spec: VirtualMachineInstanceSpec, node: NodeInfo) -> int:
    affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    preferred = affinity.preferred_during_scheduling_ignored_during_execution if affinity else None
    return sum(p.weight for p in preferred or () if _term_matches(p.preference, node))


def _infos(nodes: Iterable[NodeInfo | Mapping[str, Any]]) -> list[NodeInfo]:
    return [n if isinstance(n, NodeInfo) else NodeInfo.from_wire(n) for n in nodes]


def choose_node(
    spec: VirtualMachineInstanceSpec, nodes: Iterable[NodeInfo | Mapping[str, Any]]
) -> str | None:
    """A node ``spec`` fits, with the highest preferred-affinity weight (ties: by name); None if none."""
    fitting = [n for n in _infos(nodes) if not fits(spec, n)]
    if not fitting:
        return None
    return min(fitting, key=lambda n: (-_preference(spec, n), n.name)).name


def unschedulable_message(
    spec: VirtualMachineInstanceSpec, nodes: Iterable[NodeInfo | Mapping[str, Any]]
) -> str:
    """The scheduler's FitError text, e.g. ``0/1 nodes are available: 1 node(s) didn't match ...``."""
    infos = _infos(nodes)
    if not infos:
        return NO_NODES
    # Each node counts once, under the first filter that rejected it; sorted as Go's sort.Strings.
    histogram = Counter(reasons[0] for n in infos if (reasons := fits(spec, n)))
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    available = len(infos) - sum(histogram.values())
    return f"{available}/{len(infos)} nodes are available: {', '.join(parts)}."
