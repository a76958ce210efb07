"""Whether a node is alive, and what follows when it is not: pure decisions of the node lifecycle.

As Kubernetes' node lifecycle controller, a node is judged by its ``kube-node-lease`` Lease, and by
when *this controller saw* the lease's ``renewTime`` change (on its own monotonic clock, never the
agent's, so clock skew between hosts, or a wall clock set forward, cannot make a node look fresh or
dead): a node not seen renewing for
``grace_period`` seconds (``--node-monitor-grace-period``, 40 s) gets every condition ``Unknown``
(reason ``NodeStatusUnknown``, "Kubelet stopped posting node status.") and the
``node.kubernetes.io/unreachable`` taints, ``NoSchedule`` and ``NoExecute``. A node seen renewing
again loses those taints (its agent writes its conditions back to ``True``).

Its VMIs are not given up at once: an agent that could not renew for ``fence_timeout`` seconds (30 s,
shorter than ``grace_period``) has stopped its guests itself (``agent.fencing``), and only past the
**fencing deadline**, ``fence_timeout + fence_margin`` and at least ``grace_period`` after the last
renewal seen, do its VMIs go ``Failed`` (reason ``NodeUnreachable``) and lose the machine
finalizer, so the VM controller's run strategy may start them elsewhere. The agent's 30 s count
starts when it *sent* its last successful renewal, which is before the controller could see it, so
the guests are stopped at least ``grace_period - fence_timeout`` (10 s) before anyone starts
another on the same disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.api.timestamps import timestamp

__all__ = [
    "NODE_STATUS_UNKNOWN",
    "NODE_STATUS_UNKNOWN_MESSAGE",
    "NODE_UNREACHABLE",
    "UNREACHABLE_TAINT_KEY",
    "HealthConfig",
    "NodeVerdict",
    "RenewalSeen",
    "judge",
    "reachable_node",
    "seen",
    "unreachable_node",
    "unreachable_vmi",
]

NODE_STATUS_UNKNOWN = "NodeStatusUnknown"
NODE_STATUS_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
#: The reason a VMI of a lost node fails with.
NODE_UNREACHABLE = "NodeUnreachable"
UNREACHABLE_TAINT_KEY = "node.kubernetes.io/unreachable"
_FINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """The timing of node failure detection and fencing, in seconds."""

    grace_period: float = 40.0
    fence_timeout: float = 30.0
    fence_margin: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.fence_timeout < self.grace_period:
            raise ValueError(
                f"the agent's fence timeout ({self.fence_timeout} s) must be positive and shorter than "
                f"the node monitor grace period ({self.grace_period} s)"
            )

    @property
    def fencing_deadline(self) -> float:
        """Seconds after the last renewal seen when the node's guests are surely stopped."""
        return max(self.grace_period, self.fence_timeout + self.fence_margin)


@dataclass(frozen=True, slots=True)
class RenewalSeen:
    """The lease's ``renewTime`` as last seen, and when this controller saw it change (seconds on
    its monotonic clock)."""

    renew_time: str | None
    at: float


def seen(previous: RenewalSeen | None, renew_time: str | None, now: float) -> RenewalSeen:
    """What is known after reading the lease at ``now``: a new ``renewTime`` (or a first look at the
    node, which gets a full grace period, as after a controller restart) is seen now."""
    if previous is not None and previous.renew_time == renew_time:
        return previous
    return RenewalSeen(renew_time, now)


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """``reachable``; ``fenced``: past the fencing deadline; ``recheck_after``: seconds until the
    next deadline (None: none left)."""

    reachable: bool
    fenced: bool
    recheck_after: float | None


def judge(renewal: RenewalSeen, now: float, config: HealthConfig) -> NodeVerdict:
    """The node's state at ``now`` (the monotonic clock ``renewal`` was seen on)."""
    silent = now - renewal.at
    reachable = silent < config.grace_period
    fenced = silent >= config.fencing_deadline
    upcoming = [d - silent for d in (config.grace_period, config.fencing_deadline) if d > silent]
    return NodeVerdict(reachable, fenced, min(upcoming) if upcoming else None)


def _stamp(now: datetime) -> str:
    return timestamp(now)


def unreachable_node(node: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """``node`` with every condition Unknown and the unreachable taints (unchanged parts kept,
    ``lastTransitionTime`` moved only on a transition, the taints' ``timeAdded`` kept)."""
    status = dict(node.get("status") or {})
    conditions = []
    for condition in status.get("conditions") or ():
        if condition.get("status") == "Unknown" and condition.get("reason") == NODE_STATUS_UNKNOWN:
            conditions.append(condition)
            continue
        conditions.append(
            {
                **condition,
                "status": "Unknown",
                "reason": NODE_STATUS_UNKNOWN,
                "message": NODE_STATUS_UNKNOWN_MESSAGE,
                "lastTransitionTime": _stamp(now),
            }
        )
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions.append(
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": NODE_STATUS_UNKNOWN,
                "message": NODE_STATUS_UNKNOWN_MESSAGE,
                "lastTransitionTime": _stamp(now),
            }
        )
    spec = dict(node.get("spec") or {})
    taints = list(spec.get("taints") or ())
    for effect in ("NoSchedule", "NoExecute"):
        if not any(t.get("key") == UNREACHABLE_TAINT_KEY and t.get("effect") == effect for t in taints):
            taint = {"key": UNREACHABLE_TAINT_KEY, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = _stamp(now)
            taints.append(taint)
    return {**node, "spec": {**spec, "taints": taints}, "status": {**status, "conditions": conditions}}


def reachable_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` without the unreachable taints (its agent reports its conditions itself)."""
    spec = dict(node.get("spec") or {})
    taints = [t for t in spec.get("taints") or () if t.get("key") != UNREACHABLE_TAINT_KEY]
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)
    return {**node, "spec": spec}


def unreachable_vmi(vmi: Mapping[str, Any], now: datetime) -> tuple[dict[str, Any] | None, list[str] | None]:
    """For a VMI of a node past its fencing deadline: the status to write (``Failed``, reason
    ``NodeUnreachable``; None when it is final already) and the finalizers to keep (None: no change;
    the machine finalizer goes, since the fenced agent has stopped the machine)."""
    status = dict(vmi.get("status") or {})
    new_status: dict[str, Any] | None = None
    if status.get("phase") not in _FINAL_PHASES:
        stamps = [*(status.get("phaseTransitionTimestamps") or ())]
        stamps.append({"phase": "Failed", "phaseTransitionTimestamp": _stamp(now)})
        ready = [c for c in status.get("conditions") or () if c.get("type") != "Ready"]
        ready.append(
            {
                "type": "Ready",
                "status": "False",
                "reason": NODE_UNREACHABLE,
                "message": f"the node {status.get('nodeName')} is unreachable and its guests are fenced",
                "lastTransitionTime": _stamp(now),
            }
        )
        new_status = {
            **status,
            "phase": "Failed",
            "reason": NODE_UNREACHABLE,
            "conditions": ready,
            "phaseTransitionTimestamps": stamps,
        }
    finalizers = list((vmi.get("metadata") or {}).get("finalizers") or ())
    kept = [f for f in finalizers if f != MACHINE_FINALIZER] if MACHINE_FINALIZER in finalizers else None
    return new_status, kept
