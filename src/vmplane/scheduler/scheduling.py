"""Which nodes a VMI may run on: the Kubernetes scheduler's filters, as pure functions.

A VMI is placed as its virt-launcher Pod would be: ``nodeSelector`` (plus the implicit
``kubevirt.io/schedulable=true`` every launcher Pod carries), required node affinity, and taints with
``NoSchedule``/``NoExecute`` effects that its tolerations do not tolerate (including the taints
Kubernetes puts on cordoned and not-ready nodes), and the node's allocatable CPU and memory
against what its VMIs already request (``NodeResourcesFit``; what a VMI requests is
``api.guest_resources``; the placement predicates are ``api.placement``'s). Reasons and the summary
message are the scheduler's own words, so ``kubectl describe`` reads as it would for a Pod.

Among the nodes that fit, the highest preferred-affinity weight wins; among equals, the least
allocated (the mean free fraction of CPU and memory after placing the VMI, as the
``NodeResourcesFit`` ``LeastAllocated`` score), so equal nodes fill evenly; then the name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vmplane.api.guest_resources import DEFAULT_CPU_ALLOCATION_RATIO, Resources, allocatable_of, guest_request
from vmplane.api.placement import (
    REPELLING_EFFECTS,
    affinity_matches,
    selector_matches,
    term_matches,
    tolerated,
    tolerates,
)
from vmplane.api.scheduling import (
    NOT_READY_TAINT,
    SCHEDULABLE_LABEL,
    UNREACHABLE_TAINT,
    UNSCHEDULABLE_TAINT,
    Taint,
)
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "AFFINITY_MISMATCH",
    "INSUFFICIENT",
    "NO_NODES",
    "UNSCHEDULABLE_NODE",
    "NodeInfo",
    "choose_node",
    "fits",
    "tolerates",
    "unschedulable_message",
    "untolerated_taint",
]

# The scheduler's reasons (k8s.io/kubernetes/pkg/scheduler/framework/plugins).
AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_NODE = "node(s) were unschedulable"
NO_NODES = "no nodes available to schedule pods"
#: NodeResourcesFit's reason, per resource (``Insufficient cpu``, ``Insufficient memory``).
INSUFFICIENT = "Insufficient {}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the filters read of a Node. ``ready`` is its Ready condition (None when it has none)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: Literal["True", "False", "Unknown"] | None = None
    #: ``status.allocatable`` CPU and memory; None: not declared, not limited.
    allocatable: Resources | None = None

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
            allocatable=allocatable_of(obj),
        )


def _affinity_matches(spec: VirtualMachineInstanceSpec, node: NodeInfo) -> bool:
    # Every virt-launcher Pod also selects the label virt-handler puts on nodes that can run VMIs.
    selector = {SCHEDULABLE_LABEL: "true", **(spec.node_selector or {})}
    return selector_matches(selector, node.labels) and affinity_matches(
        spec, name=node.name, labels=node.labels
    )


def _condition_taints(node: NodeInfo) -> tuple[Taint, ...]:
    if node.ready == "False":
        return (NOT_READY_TAINT,)
    if node.ready == "Unknown":
        return (UNREACHABLE_TAINT,)
    return ()


def untolerated_taint(taint: Taint) -> str:
    """The TaintToleration filter's reason for ``taint``."""
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


def _filters(
    spec: VirtualMachineInstanceSpec, node: NodeInfo, used: Resources, request: Resources
) -> list[list[str]]:
    """Each failing filter's reasons, in the scheduler's filter order (NodeUnschedulable,
    TaintToleration, NodeAffinity, NodeResourcesFit)."""
    tolerations = spec.tolerations or []
    failed: list[list[str]] = []
    if node.unschedulable and not tolerated(tolerations, UNSCHEDULABLE_TAINT):
        failed.append([UNSCHEDULABLE_NODE])
    for taint in (*node.taints, *_condition_taints(node)):
        if taint.effect in REPELLING_EFFECTS and not tolerated(tolerations, taint):
            failed.append([untolerated_taint(taint)])
            break  # the filter reports the first untolerated taint only
    if not _affinity_matches(spec, node):
        failed.append([AFFINITY_MISMATCH])
    if node.allocatable is not None:
        short = (used + request).short_of(node.allocatable)
        if short:
            failed.append([INSUFFICIENT.format(name) for name in short])
    return failed


def fits(
    spec: VirtualMachineInstanceSpec,
    node: NodeInfo | Mapping[str, Any],
    *,
    used: Resources | None = None,
    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
) -> list[str]:
    """Why ``spec`` cannot run on ``node`` (whose VMIs request ``used``), in the scheduler's filter
    order; empty when it fits."""
    info = node if isinstance(node, NodeInfo) else NodeInfo.from_wire(node)
    request = guest_request(spec, cpu_allocation_ratio=cpu_allocation_ratio)
    return [reason for group in _filters(spec, info, used or Resources(), request) for reason in group]


def _preference(spec: VirtualMachineInstanceSpec, node: NodeInfo) -> int:
    affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    preferred = affinity.preferred_during_scheduling_ignored_during_execution if affinity else None
    return sum(
        p.weight for p in preferred or () if term_matches(p.preference, name=node.name, labels=node.labels)
    )


def _free_fraction(node: NodeInfo, after: Resources) -> float:
    """The LeastAllocated score: the mean free fraction of CPU and memory (1.0 when not limited)."""
    room = node.allocatable
    if room is None:
        return 1.0
    fractions = [
        (total - taken) / total if total > 0 else 0.0
        for total, taken in ((room.cpu_millis, after.cpu_millis), (room.memory_bytes, after.memory_bytes))
    ]
    return sum(fractions) / len(fractions)


def _infos(nodes: Iterable[NodeInfo | Mapping[str, Any]]) -> list[NodeInfo]:
    return [n if isinstance(n, NodeInfo) else NodeInfo.from_wire(n) for n in nodes]


def choose_node(
    spec: VirtualMachineInstanceSpec,
    nodes: Iterable[NodeInfo | Mapping[str, Any]],
    *,
    used: Mapping[str, Resources] | None = None,
    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
) -> str | None:
    """A node ``spec`` fits (``used``: what each node's VMIs request), by preferred-affinity weight,
    then least allocated, then name; None if none fits."""
    used = used or {}
    request = guest_request(spec, cpu_allocation_ratio=cpu_allocation_ratio)
    fitting = [n for n in _infos(nodes) if not _filters(spec, n, used.get(n.name, Resources()), request)]
    if not fitting:
        return None
    return min(
        fitting,
        key=lambda n: (
            -_preference(spec, n),
            -_free_fraction(n, used.get(n.name, Resources()) + request),
            n.name,
        ),
    ).name


def unschedulable_message(
    spec: VirtualMachineInstanceSpec,
    nodes: Iterable[NodeInfo | Mapping[str, Any]],
    *,
    used: Mapping[str, Resources] | None = None,
    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
) -> str:
    """The scheduler's FitError text, e.g. ``0/3 nodes are available: 1 Insufficient memory, 2
    node(s) didn't match Pod's node affinity/selector.`` (``framework.FitError.Error``)."""
    infos = _infos(nodes)
    if not infos:
        return NO_NODES
    used = used or {}
    request = guest_request(spec, cpu_allocation_ratio=cpu_allocation_ratio)
    # The scheduler stops at a node's first failing filter and counts every reason that filter gave
    # (NodeResourcesFit may give both cpu and memory); the parts are sorted as Go's sort.Strings.
    histogram: Counter[str] = Counter()
    for info in infos:
        failed = _filters(spec, info, used.get(info.name, Resources()), request)
        if failed:
            histogram.update(failed[0])
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    return f"0/{len(infos)} nodes are available: {', '.join(parts)}."
