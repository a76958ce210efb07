"""The planner: what a change to a VM does to its running guest. A pure function, no I/O.

``plan()`` compares the running spec (the VMI's) with the VM's current effective spec and sorts every
difference into live changes, to apply now, and pending changes, which wait for a restart. The
``RestartRequired`` condition follows from the result alone: it is set exactly while something is
pending, and while it is set nothing is propagated; live-capable changes wait among the pending
ones. So reverting the template clears the condition, and the waiting changes then go live.

Given ``node_room`` (what the VMI's node has for it: allocatable minus the other VMIs' requests), a
live CPU or memory change that would make the VMI request more than that is pending instead, reason
``InsufficientNodeResources``, as the scheduler would refuse to place it there (``api.guest_resources``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from vmplane.api.guest_resources import DEFAULT_CPU_ALLOCATION_RATIO, Resources, guest_request
from vmplane.api.kubevirt import KubeVirtConfiguration, RolloutStrategy
from vmplane.api.vm import ChangeSource, PendingChange
from vmplane.api.vmi import VirtualMachineInstanceSpec, VirtualMachineInstanceStatus
from vmplane.rollout.apply import replace_paths
from vmplane.rollout.diff import Difference, diff_models
from vmplane.rollout.effective import EffectiveSpec, Provenance
from vmplane.rollout.fields import MEMORY_GUEST
from vmplane.rollout.observed import observed_from_status
from vmplane.rollout.paths import set_path
from vmplane.rollout.reasons import MEMORY_HOTPLUG_FAILED, MESSAGES, Reason
from vmplane.rollout.table import Context, LiveKind, classify

__all__ = [
    "TEMPLATE_SPEC_PREFIX",
    "LiveChange",
    "Plan",
    "RestartRequired",
    "change_source",
    "plan",
    "vm_path",
]

TEMPLATE_SPEC_PREFIX = "spec.template.spec."


def vm_path(spec_path: str) -> str:
    """The VM-level path of a VMI-spec path: ``domain.cpu.sockets`` → ``spec.template.spec.domain...``."""
    return TEMPLATE_SPEC_PREFIX + spec_path


@dataclass(frozen=True, slots=True)
class LiveChange:
    """A difference to apply to the running guest now (``path`` relative to the VMI spec)."""

    path: str
    running: Any
    desired: Any
    kind: LiveKind
    source: ChangeSource


@dataclass(frozen=True, slots=True)
class RestartRequired:
    """The ``RestartRequired`` condition's reason (of the first pending change) and message (of all)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome: live changes, pending changes, the condition, and the VMI spec to write."""

    live: tuple[LiveChange, ...]
    pending: tuple[PendingChange, ...]
    restart_required: RestartRequired | None
    next_running: VirtualMachineInstanceSpec

    @property
    def empty(self) -> bool:
        """Nothing to apply and nothing pending."""
        return not self.live and not self.pending


#: The pending-change source of each provenance that is not the template's.
_SOURCES = {
    Provenance.CLUSTER: ChangeSource.CLUSTER,
    Provenance.INSTANCETYPE: ChangeSource.INSTANCETYPE,
    Provenance.PREFERENCE: ChangeSource.PREFERENCE,
}


def change_source(effective: EffectiveSpec, path: str) -> ChangeSource:
    """Who gave the effective spec its value at ``path`` (relative to the VMI spec)."""
    return _SOURCES.get(effective.source_of(path), ChangeSource.TEMPLATE)


def _source(effective: EffectiveSpec, diff: Difference) -> ChangeSource:
    source = change_source(effective, diff.path)
    if source is ChangeSource.TEMPLATE and diff.running is None and isinstance(diff.desired, dict):
        # An object the running guest lacks and only defaults fill in (``domain.machine`` holding
        # just the default machine type) is the change of whoever gave those defaults.
        leaves = {_SOURCES.get(effective.source_of(p)) for p in _leaves(diff.path, diff.desired)}
        if len(leaves) == 1 and None not in leaves:
            source = leaves.pop() or ChangeSource.TEMPLATE
    return source


def _leaves(base: str, value: Any) -> list[str]:
    if not isinstance(value, dict) or not value:
        return [base]
    return [leaf for key, child in value.items() for leaf in _leaves(f"{base}.{key}", child)]


def _pending(diff: Difference, reason: Reason, message: str, source: ChangeSource) -> PendingChange:
    return PendingChange(
        path=vm_path(diff.path),
        running=diff.running,
        desired=diff.desired,
        reason=reason.value,
        message=message,
        source=source,
    )


def _summary(pending: list[PendingChange]) -> str:
    lines = [f"{p.path}: {p.message}" for p in pending]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} changes require a restart: " + "; ".join(lines)


# What each resource-bearing live kind changes of the VMI's request.
_RESOURCE_OF_KIND = {LiveKind.CPU: "cpu", LiveKind.MEMORY: "memory"}


def _beyond_node(
    live: list[tuple[Difference, LiveChange]],
    actual: dict[str, Any],
    node_room: Resources,
    ratio: int,
) -> tuple[list[tuple[Difference, LiveChange]], list[PendingChange]]:
    """The live changes the node can hold, and the rest as ``InsufficientNodeResources`` pending
    changes: a resource is refused when its changes raise the request above ``node_room``."""
    now = guest_request(VirtualMachineInstanceSpec.model_validate(actual), cpu_allocation_ratio=ratio)
    refused: set[LiveKind] = set()
    messages: dict[LiveKind, str] = {}
    for kind, resource in _RESOURCE_OF_KIND.items():
        changes = [diff for diff, change in live if change.kind is kind]
        if not changes:
            continue
        wire = copy.deepcopy(actual)
        for diff in changes:
            set_path(wire, diff.path, diff.desired)
        after = guest_request(VirtualMachineInstanceSpec.model_validate(wire), cpu_allocation_ratio=ratio)
        grows = (
            after.cpu_millis > now.cpu_millis if resource == "cpu" else after.memory_bytes > now.memory_bytes
        )
        if grows and resource in after.short_of(node_room):
            refused.add(kind)
            needed, room = (
                (f"{after.cpu_millis}m", f"{node_room.cpu_millis}m")
                if resource == "cpu"
                else (f"{after.memory_bytes // 2**20}Mi", f"{node_room.memory_bytes // 2**20}Mi")
            )
            messages[kind] = (
                f"{MESSAGES[Reason.INSUFFICIENT_NODE_RESOURCES]}: Insufficient {resource} "
                f"(the VMI would request {needed}, the node has {room} for it)"
            )
    kept = [(diff, change) for diff, change in live if change.kind not in refused]
    pending = [
        _pending(diff, Reason.INSUFFICIENT_NODE_RESOURCES, messages[change.kind], change.source)
        for diff, change in live
        if change.kind in refused
    ]
    return kept, pending


def plan(
    *,
    running: VirtualMachineInstanceSpec,
    desired: EffectiveSpec,
    observed: VirtualMachineInstanceStatus | None,
    config: KubeVirtConfiguration,
    node_room: Resources | None = None,
    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
) -> Plan:
    """Plan how the running guest follows the VM: live changes now, the rest pending (docs/rollout.md §2)."""
    running_wire = running.to_wire()
    desired_wire = desired.spec.to_wire()
    facts = observed_from_status(observed, running_wire)
    # Plan from what the guest really has where a hotplug failed. ``to_wire`` returns a fresh
    # dict, so it is ours to change in place.
    actual = running_wire
    for path, failed in facts.failed.items():
        set_path(actual, path, failed.observed)
    actual_spec = VirtualMachineInstanceSpec.model_validate(actual) if facts.failed else running
    ctx = Context(running, desired.spec, actual, desired_wire, facts)
    live_update = config.rollout_strategy is RolloutStrategy.LIVE_UPDATE

    blocking: list[PendingChange] = []
    live: list[tuple[Difference, LiveChange]] = []
    for diff in diff_models(actual_spec, desired.spec, running_wire=actual, desired_wire=desired_wire):
        source = _source(desired, diff)
        if desired.source_of(diff.path) is Provenance.HEADROOM:
            continue
        verdict, kind = classify(diff, ctx)
        failure = facts.failed.get(diff.path)
        if failure is not None:
            base = MEMORY_HOTPLUG_FAILED if diff.path == MEMORY_GUEST else MESSAGES[Reason.HOTPLUG_FAILED]
            message = f"{base}: {failure.message}" if failure.message else base
            blocking.append(_pending(diff, Reason.HOTPLUG_FAILED, message, source))
        elif source is ChangeSource.CLUSTER and not (verdict.live and live_update):
            blocking.append(
                _pending(
                    diff, Reason.CLUSTER_DEFAULT_CHANGED, MESSAGES[Reason.CLUSTER_DEFAULT_CHANGED], source
                )
            )
        elif not verdict.live:
            assert verdict.reason is not None
            blocking.append(_pending(diff, verdict.reason, verdict.message, source))
        elif not live_update:
            blocking.append(
                _pending(diff, Reason.STAGED_BY_STRATEGY, MESSAGES[Reason.STAGED_BY_STRATEGY], source)
            )
        else:
            assert kind is not None
            live.append((diff, LiveChange(diff.path, diff.running, diff.desired, kind, source)))

    if node_room is not None and live:
        live, refused = _beyond_node(live, actual, node_room, cpu_allocation_ratio)
        blocking.extend(refused)

    if blocking:
        waiting = [
            _pending(diff, Reason.WAITING_FOR_RESTART, MESSAGES[Reason.WAITING_FOR_RESTART], change.source)
            for diff, change in live
        ]
        pending = blocking + waiting
        condition = RestartRequired(pending[0].reason, _summary(pending))
        return Plan((), tuple(pending), condition, running)

    if not live and not facts.failed:
        return Plan((), (), None, running)
    next_wire = actual
    for diff, _ in live:
        set_path(next_wire, diff.path, diff.desired)
    touched = [diff.path for diff, _ in live] + list(facts.failed)
    next_running = replace_paths(running, touched, next_wire)
    return Plan(tuple(change for _, change in live), (), None, next_running)
