"""Placement changes that take effect: does the node a guest runs on still admit its placement? Pure.

Under ``LiveUpdate`` a change of ``nodeSelector``, ``affinity`` or ``tolerations`` is written into
the running VMI (``rollout.table``: always live). Upstream stops there: the change "will only take
effect on next migration, the change alone will not trigger one", and nobody is told that the guest
now runs on a node its own placement excludes. ``placement_violation`` says so: one pending change
per placement field that excludes the node (reason ``PlacementViolatedByCurrentNode``; ``running``
is the node, ``desired`` the field's value) and a ``PlacementViolated`` condition. Nothing here asks
for a restart: the spec was propagated, only the node is wrong, and a migration puts that right
(``rollout.placement_migration`` decides when one starts by itself).

Which taints count: those of the node's ``spec.taints`` that keep new workloads off
(``NoSchedule``, ``NoExecute``), except the ones Kubernetes puts on for the node's condition
(``node.kubernetes.io/*``: cordoned, not ready, unreachable, pressure) and KubeVirt's drain taint:
those say the node is unwell or leaving, which node health and evacuation handle, not that the
guest's placement changed. For the same reason ``kubevirt.io/schedulable`` is not asked of the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.meta import Condition
from vmplane.api.placement import REPELLING_EFFECTS, affinity_matches, selector_matches, tolerated
from vmplane.api.scheduling import Taint
from vmplane.api.vm import ChangeSource, PendingChange
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.effective import EffectiveSpec
from vmplane.rollout.plan import Plan, change_source, vm_path
from vmplane.rollout.reasons import MESSAGES, Reason

__all__ = [
    "NODE_CONDITION_TAINT_PREFIX",
    "PLACEMENT_VIOLATED",
    "PlacementViolation",
    "placement_after",
    "placement_violation",
]

#: The VM condition, True while the guest's node does not admit its placement (vmplane's; upstream has none).
PLACEMENT_VIOLATED = "PlacementViolated"
#: The prefix of the taints Kubernetes puts on nodes by their condition (TaintNodesByCondition, cordon).
NODE_CONDITION_TAINT_PREFIX = "node.kubernetes.io/"


@dataclass(frozen=True, slots=True)
class PlacementViolation:
    """The node the guest runs on, and one pending change per placement field that excludes it."""

    node: str
    pending: tuple[PendingChange, ...]

    def condition(self) -> Condition:
        """The ``PlacementViolated`` condition (True) summarising every excluding field."""
        lines = [f"{p.path}: {p.message}" for p in self.pending]
        return Condition(
            type=PLACEMENT_VIOLATED,
            status="True",
            reason=Reason.PLACEMENT_VIOLATED.value,
            message="; ".join(lines),
        )


def _placement_taints(node: Mapping[str, Any], drain_taint_key: str) -> list[Taint]:
    taints = [Taint.from_wire(t) for t in (node.get("spec") or {}).get("taints") or ()]
    return [
        t
        for t in taints
        if t.effect in REPELLING_EFFECTS
        and not t.key.startswith(NODE_CONDITION_TAINT_PREFIX)
        and t.key != drain_taint_key
    ]


def _why_not(vmi: VirtualMachineInstance, node: Mapping[str, Any], drain_taint_key: str) -> dict[str, str]:
    """Each placement field (VMI-spec path) that excludes ``node``, with what the node lacks."""
    spec = vmi.spec
    meta = node.get("metadata") or {}
    name, labels = str(meta.get("name") or ""), dict(meta.get("labels") or {})
    why: dict[str, str] = {}
    if not selector_matches(spec.node_selector, labels):
        missing = {k: v for k, v in (spec.node_selector or {}).items() if labels.get(k) != v}
        why["nodeSelector"] = f"node {name} lacks the labels {missing}"
    if not affinity_matches(spec, name=name, labels=labels):
        why["affinity"] = f"node {name} matches no term of the required node affinity"
    tolerations = spec.tolerations or []
    untolerated = [t for t in _placement_taints(node, drain_taint_key) if not tolerated(tolerations, t)]
    if untolerated:
        taint = untolerated[0]
        why["tolerations"] = f"node {name} has the untolerated taint {{{taint.key}: {taint.value}}}"
    return why


def placement_violation(
    *,
    vmi: VirtualMachineInstance,
    node: Mapping[str, Any] | None,
    desired: EffectiveSpec | None,
    drain_taint_key: str,
) -> PlacementViolation | None:
    """Whether ``node`` (the Node object the VMI runs on) no longer admits the VMI's placement (None:
    it does, or the VMI is on no node we know). ``desired`` tells each field's source."""
    node_name = vmi.status.node_name if vmi.status is not None else None
    if node is None or not node_name:
        return None
    why = _why_not(vmi, node, drain_taint_key)
    if not why:
        return None
    wire = vmi.spec.to_wire()
    base = MESSAGES[Reason.PLACEMENT_VIOLATED]
    pending = tuple(
        PendingChange(
            path=vm_path(path),
            running=node_name,
            desired=wire.get(path),
            reason=Reason.PLACEMENT_VIOLATED.value,
            message=f"{base} ({detail})",
            source=change_source(desired, path) if desired is not None else ChangeSource.TEMPLATE,
        )
        for path, detail in why.items()
    )
    return PlacementViolation(node=node_name, pending=pending)


def placement_after(
    *,
    vmi: VirtualMachineInstance,
    rollout: Plan,
    node: Mapping[str, Any] | None,
    desired: EffectiveSpec | None,
    config: KubeVirtConfiguration,
) -> PlacementViolation | None:
    """``placement_violation`` for the VMI spec the rollout leaves (its live changes written)."""
    return placement_violation(
        vmi=vmi.model_copy(update={"spec": rollout.next_running}),
        node=node,
        desired=desired,
        drain_taint_key=config.migration_limits.node_drain_taint_key,
    )
