"""What ``vmplane drain`` and ``vmplane uncordon`` do to a node and its VMIs. Pure.

Draining cordons the node (``spec.unschedulable: true``, as ``kubectl cordon``) and puts the
cluster's drain taint on it (``kubevirt.io/drain:NoSchedule`` unless the KubeVirt object names
another key), with the value ``vmplane-drain`` so that ``uncordon`` removes only a taint a drain
put there. Then each VMI on the node is one of:

- ``migrate``: its eviction strategy moves it (``LiveMigrate``, or ``LiveMigrateIfPossible`` while
  ``LiveMigratable``); the evacuation controller creates its migration, the drain waits for it;
- ``stop``: the strategy does not move it (``None``, ``LiveMigrateIfPossible`` when not migratable)
  or the VMI has finished: the VMI is deleted, as upstream's ``kubectl drain`` evicting the
  virt-launcher pod shuts the guest down; its VM, if any, starts it again on another node when its
  run strategy says so (``Always``; ``RerunOnFailure`` only after a failure, so not after this);
- ``wait``: nothing moves it yet: ``LiveMigrate`` while not ``LiveMigratable`` (upstream's
  disruption budget blocks the eviction), or ``External`` (another controller tears it down).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.migratable import (
    LIVE_MIGRATABLE,
    eviction_strategy,
    live_migratable,
    migrates_on_eviction,
)
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.store.base import JsonObject

__all__ = [
    "DRAIN_TAINT_VALUE",
    "DrainAction",
    "DrainStep",
    "cordoned",
    "drain_step",
    "uncordoned",
]

#: The value of the drain taint ``vmplane drain`` puts on a node, so ``uncordon`` knows it is its own.
DRAIN_TAINT_VALUE = "vmplane-drain"

_FINAL = frozenset({VMIPhase.SUCCEEDED, VMIPhase.FAILED})


class DrainAction(str, Enum):
    MIGRATE = "migrate"
    STOP = "stop"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class DrainStep:
    """What happens to one VMI of the node, and the progress line that says so."""

    action: DrainAction
    message: str


def drain_step(
    vmi: VirtualMachineInstance, *, config: KubeVirtConfiguration, run_strategy: str | None
) -> DrainStep:
    """The step for ``vmi`` (``run_strategy``: its VM's, None when no VM owns it)."""
    strategy = eviction_strategy(vmi.spec, config)
    phase = vmi.status.phase if vmi.status is not None else None
    movable = migrates_on_eviction(vmi, config) and live_migratable(vmi)
    if phase not in _FINAL and movable:
        state = vmi.status.migration_state if vmi.status is not None else None
        target = f" to {state.target_node}" if state is not None and state.target_node else ""
        return DrainStep(DrainAction.MIGRATE, f"migrating{target} (evictionStrategy {strategy})")
    if phase not in _FINAL and strategy == "LiveMigrate":
        condition = vmi.status.condition(LIVE_MIGRATABLE) if vmi.status is not None else None
        why = condition.message if condition is not None and condition.message else "not LiveMigratable"
        return DrainStep(DrainAction.WAIT, f"cannot be evicted (evictionStrategy LiveMigrate): {why}")
    if phase not in _FINAL and strategy == "External":
        return DrainStep(DrainAction.WAIT, "waits for its external controller (evictionStrategy External)")
    if run_strategy is None:
        after = "it has no VM: it is gone"
    elif run_strategy == "Always":
        after = f"its VM starts it again on another node (runStrategy {run_strategy})"
    else:
        after = f"its VM leaves it stopped (runStrategy {run_strategy})"
    return DrainStep(DrainAction.STOP, f"stopping (evictionStrategy {strategy}): {after}")


def _taints(node: Mapping[str, Any]) -> list[JsonObject]:
    return [dict(t) for t in (node.get("spec") or {}).get("taints") or ()]


def cordoned(node: JsonObject, taint_key: str) -> JsonObject | None:
    """``node`` unschedulable and carrying the drain taint, None when it already is both."""
    spec = dict(node.get("spec") or {})
    taints = _taints(node)
    has_taint = any(t.get("key") == taint_key and t.get("effect") == "NoSchedule" for t in taints)
    if spec.get("unschedulable") and has_taint:
        return None
    if not has_taint:
        taints.append({"key": taint_key, "value": DRAIN_TAINT_VALUE, "effect": "NoSchedule"})
    return {**node, "spec": {**spec, "unschedulable": True, "taints": taints}}


def uncordoned(node: JsonObject, taint_key: str) -> JsonObject | None:
    """``node`` schedulable again, without the drain taint a drain put there (one set by someone
    else stays); None when there is nothing to change."""
    spec = dict(node.get("spec") or {})
    taints = _taints(node)
    kept = [t for t in taints if not (t.get("key") == taint_key and t.get("value") == DRAIN_TAINT_VALUE)]
    if not spec.get("unschedulable") and kept == taints:
        return None
    spec.pop("unschedulable", None)
    if kept:
        spec["taints"] = kept
    else:
        spec.pop("taints", None)
    return {**node, "spec": spec}
