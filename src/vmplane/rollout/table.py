"""The live-update table: for each field family, when a difference can reach a running guest.

This is the one place that says what is live-updatable (docs/rollout.md §2); the planner and the table tests
both read ``LIVE_UPDATE_TABLE``. A difference no rule matches is not live-updatable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vmplane.api.memory_hotplug import memory_hotplug_errors
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.diff import Difference
from vmplane.rollout.fields import (
    AFFINITY_FIELDS,
    DISK_FIELDS,
    INTERFACE_FIELDS,
    MEMORY_FIELDS,
    NETWORK_FIELDS,
    NODE_SELECTOR_FIELDS,
    SOCKETS_FIELDS,
    TOLERATION_FIELDS,
    VOLUME_FIELDS,
    Family,
    LiveKind,
    disk_path,
    element_of,
    interface_path,
    volume_path,
)
from vmplane.rollout.observed import Observed
from vmplane.rollout.paths import get_path
from vmplane.rollout.reasons import MESSAGES, Reason

__all__ = ["LIVE_UPDATE_TABLE", "Context", "LiveKind", "Rule", "Verdict", "classify"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Live (``reason`` None) or pending with a reason and the message to show."""

    reason: Reason | None = None
    message: str = ""

    @property
    def live(self) -> bool:
        """True when the difference can be applied to the running guest."""
        return self.reason is None


LIVE = Verdict()


def pending(reason: Reason, message: str | None = None) -> Verdict:
    """A pending verdict with the reason's standard message unless one is given."""
    return Verdict(reason, MESSAGES[reason] if message is None else message)


@dataclass(frozen=True, slots=True)
class Context:
    """Both specs (typed and wire) and the observed facts, as the rules need them."""

    running: VirtualMachineInstanceSpec
    desired: VirtualMachineInstanceSpec
    running_wire: Mapping[str, Any]
    desired_wire: Mapping[str, Any]
    observed: Observed


@dataclass(frozen=True, slots=True)
class Rule:
    """Differences whose path is in ``family`` are judged by ``judge``."""

    family: Family
    judge: Callable[[Difference, Context], Verdict]
    summary: str

    @property
    def pattern(self) -> str:
        return self.family.pattern

    @property
    def kind(self) -> LiveKind:
        return self.family.kind

    def matches(self, path: str) -> bool:
        """Whether this rule governs ``path``."""
        return self.family.matches(path)


def _cpu_sockets(diff: Difference, ctx: Context) -> Verdict:
    running, desired = diff.running, diff.desired
    if running is None or desired is None:
        return pending(Reason.NON_LIVE_UPDATABLE)
    cpu = ctx.running.domain.cpu
    max_sockets = (cpu.max_sockets if cpu is not None else None) or 0
    if desired > max_sockets:
        return pending(Reason.CPU_SOCKETS_ABOVE_MAX)
    if desired < running:
        return pending(Reason.CPU_SOCKETS_REDUCED)
    if ctx.desired.architecture == "arm64":
        return pending(Reason.CPU_HOTPLUG_UNSUPPORTED)
    return LIVE


def _memory_guest(diff: Difference, ctx: Context) -> Verdict:
    if diff.running is None or diff.desired is None:
        return pending(Reason.NON_LIVE_UPDATABLE)
    memory = ctx.running.domain.memory
    max_guest = memory.max_guest if memory is not None else None
    if max_guest is None:
        return pending(Reason.HOTPLUG_UNAVAILABLE)
    errors = memory_hotplug_errors(ctx.desired, max_guest)
    if errors[:1] == ["Guest memory is greater than the configured maxGuest memory"]:
        return pending(Reason.MEMORY_ABOVE_MAX)
    if errors:
        return pending(Reason.HOTPLUG_UNAVAILABLE, f"memory hotplug not supported, {errors[0]}")
    at_boot = ctx.observed.guest_at_boot
    if at_boot is not None and Quantity.parse(diff.desired) < at_boot:
        return pending(Reason.MEMORY_BELOW_BOOT)
    return LIVE


def _always(diff: Difference, ctx: Context) -> Verdict:
    return LIVE


def _element_name(path: str) -> str:
    element = element_of(path)
    assert element is not None, path  # the rules below govern whole named elements only
    return element[1]


def _volume(wire: Mapping[str, Any], name: str) -> Any:
    return get_path(dict(wire), volume_path(name))


def _hotpluggable(volume: Any) -> bool:
    if not isinstance(volume, dict):
        return False
    return any(
        isinstance(volume.get(src), dict) and volume[src].get("hotpluggable") is True
        for src in ("persistentVolumeClaim", "dataVolume")
    )


def _disk(diff: Difference, ctx: Context) -> Verdict:
    name = _element_name(diff.path)
    old_volume, new_volume = _volume(ctx.running_wire, name), _volume(ctx.desired_wire, name)
    if diff.desired is None:
        if "cdrom" in diff.running:
            return pending(Reason.CDROM_REMOVED)
        return LIVE if old_volume is None or _hotpluggable(old_volume) else pending(Reason.NON_LIVE_UPDATABLE)
    if diff.running is None:
        return LIVE if _hotpluggable(new_volume) else pending(Reason.NON_LIVE_UPDATABLE)
    return pending(Reason.NON_LIVE_UPDATABLE)


def _volume_source(diff: Difference, ctx: Context) -> Verdict:
    name = _element_name(diff.path)
    disk = get_path(dict(ctx.desired_wire), disk_path(name))
    behind_cdrom = isinstance(disk, dict) and "cdrom" in disk
    ends = [v for v in (diff.running, diff.desired) if v is not None]
    if all(_hotpluggable(v) for v in ends) or (behind_cdrom and len(ends) == 1 and _hotpluggable(ends[0])):
        return LIVE
    return pending(Reason.NON_LIVE_UPDATABLE)


def _without_state(interface: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in interface.items() if k != "state"}


def _interface(diff: Difference, ctx: Context) -> Verdict:
    if diff.running is None:
        return LIVE
    if diff.desired is None:
        return LIVE if diff.running.get("state") == "absent" else pending(Reason.INTERFACE_REMOVED)
    if _without_state(diff.running) == _without_state(diff.desired):
        return LIVE
    return pending(Reason.NON_LIVE_UPDATABLE)


def _network(diff: Difference, ctx: Context) -> Verdict:
    if diff.running is None:
        return LIVE
    if diff.desired is None:
        name = _element_name(diff.path)
        interface = get_path(dict(ctx.desired_wire), interface_path(name))
        was = get_path(dict(ctx.running_wire), interface_path(name))
        unplugged = any(isinstance(i, dict) and i.get("state") == "absent" for i in (interface, was))
        return LIVE if unplugged else pending(Reason.NON_LIVE_UPDATABLE)
    return pending(Reason.NON_LIVE_UPDATABLE)


LIVE_UPDATE_TABLE: tuple[Rule, ...] = (
    Rule(
        SOCKETS_FIELDS,
        _cpu_sockets,
        "increase up to the VMI's maxSockets; decrease or above maxSockets needs a restart",
    ),
    Rule(
        MEMORY_FIELDS,
        _memory_guest,
        "increase up to maxGuest, decrease not below guestAtBoot",
    ),
    Rule(NODE_SELECTOR_FIELDS, _always, "always live"),
    Rule(AFFINITY_FIELDS, _always, "always live"),
    Rule(TOLERATION_FIELDS, _always, "always live"),
    Rule(
        DISK_FIELDS,
        _disk,
        "add/remove when its volume is hotpluggable; a CD-ROM drive's removal needs a restart",
    ),
    Rule(
        VOLUME_FIELDS,
        _volume_source,
        "add/remove/swap a hotpluggable volume (CD-ROM media change included)",
    ),
    Rule(
        INTERFACE_FIELDS,
        _interface,
        "add, state up/down/absent; model, MAC or binding changes need a restart",
    ),
    Rule(
        NETWORK_FIELDS,
        _network,
        "add; removal only together with its interface's state: absent",
    ),
)


def classify(diff: Difference, ctx: Context) -> tuple[Verdict, LiveKind | None]:
    """Judge one difference by the first rule that matches it (not live-updatable when none does)."""
    for rule in LIVE_UPDATE_TABLE:
        if rule.matches(diff.path):
            return rule.judge(diff, ctx), rule.kind
    return pending(Reason.NON_LIVE_UPDATABLE), None
