"""Placement types from ``k8s.io/api/core/v1``: node selectors, affinity and tolerations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vmplane.api.model import WireModel

__all__ = [
    "NOT_READY_TAINT",
    "SCHEDULABLE_LABEL",
    "UNREACHABLE_TAINT",
    "UNSCHEDULABLE_TAINT",
    "Affinity",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NodeAffinity",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "PodAffinity",
    "PodAffinityTerm",
    "PodAntiAffinity",
    "PreferredSchedulingTerm",
    "Taint",
    "TaintEffect",
    "Toleration",
    "WeightedPodAffinityTerm",
]


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

#: The label virt-handler puts on nodes that can run VMIs; every launcher Pod selects it.
SCHEDULABLE_LABEL = "kubevirt.io/schedulable"


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


class NodeSelectorRequirement(WireModel):
    """``key operator values`` (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None


class NodeSelectorTerm(WireModel):
    """A term is satisfied when all its requirements are."""

    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None


class NodeSelector(WireModel):
    """Satisfied when any of its terms is."""

    node_selector_terms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(WireModel):
    """A weighted preference for nodes matching ``preference``."""

    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(WireModel):
    """Node affinity: hard requirements and soft preferences."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = None


class LabelSelectorRequirement(WireModel):
    """A set-based label requirement."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(WireModel):
    """``matchLabels`` and ``matchExpressions``, all of which must hold."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class PodAffinityTerm(WireModel):
    """Co-location with workloads matching ``labelSelector`` within ``topologyKey``."""

    topology_key: str
    label_selector: LabelSelector | None = None
    namespaces: list[str] | None = None
    namespace_selector: LabelSelector | None = None
    match_label_keys: list[str] | None = None
    mismatch_label_keys: list[str] | None = None


class WeightedPodAffinityTerm(WireModel):
    """A weighted pod (anti-)affinity preference."""

    weight: int
    pod_affinity_term: PodAffinityTerm


class PodAffinity(WireModel):
    """Schedule near matching workloads."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class PodAntiAffinity(WireModel):
    """Schedule away from matching workloads."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class Affinity(WireModel):
    """``spec.affinity``."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAntiAffinity | None = None


class Toleration(WireModel):
    """Lets a workload run on a node with a matching taint."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None
