"""The live-update table: for each field family, when a difference can reach a running guest.

This is the one place that says what is live-updatable (docs/rollout.md §2); the planner and the table tests
both read ``LIVE_UPDATE_TABLE``. A difference no rule matches is not live-updatable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vmplane.api.memory_hotplug import memory_hotplug_errors
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.diff import Difference
from vmplane.rollout.observed import Observed
from vmplane.rollout.paths import get_path
from vmplane.rollout.reasons import MESSAGES, Reason

__all__ = ["LIVE_UPDATE_TABLE", "Context", "LiveKind", "Rule", "Verdict", "classify"]


class LiveKind(str, Enum):
    """What a live change does to the guest."""

    CPU = "cpu"
    MEMORY = "memory"
    PLACEMENT = "placement"
    DISK = "disk"
    INTERFACE = "interface"


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
    """Differences whose path matches ``pattern`` are judged by ``judge``."""

    pattern: str
    kind: LiveKind
    judge: Callable[[Difference, Context], Verdict]
    summary: str

    def matches(self, path: str) -> bool:
        """Whether this rule governs ``path``."""
        return re.fullmatch(self.pattern, path) is not None


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
    return path.rsplit("[name=", 1)[1][:-1]


def _volume(wire: Mapping[str, Any], name: str) -> Any:
    return get_path(dict(wire), f"volumes[name={name}]")


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
    disk = get_path(dict(ctx.desired_wire), f"domain.devices.disks[name={name}]")
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
        interface = get_path(dict(ctx.desired_wire), f"domain.devices.interfaces[name={name}]")
        was = get_path(dict(ctx.running_wire), f"domain.devices.interfaces[name={name}]")
        unplugged = any(isinstance(i, dict) and i.get("state") == "absent" for i in (interface, was))
        return LIVE if unplugged else pending(Reason.NON_LIVE_UPDATABLE)
    return pending(Reason.NON_LIVE_UPDATABLE)


_NAMED = r"\[name=[^\]]+\]"

LIVE_UPDATE_TABLE: tuple[Rule, ...] = (
    Rule(
        r"domain\.cpu\.sockets",
        LiveKind.CPU,
        _cpu_sockets,
        "increase up to the VMI's maxSockets; decrease or above maxSockets needs a restart",
    ),
    Rule(
        r"domain\.memory\.guest",
        LiveKind.MEMORY,
        _memory_guest,
        "increase up to maxGuest, decrease not below guestAtBoot",
    ),
    Rule(r"nodeSelector", LiveKind.PLACEMENT, _always, "always live"),
    Rule(r"affinity", LiveKind.PLACEMENT, _always, "always live"),
    Rule(r"tolerations", LiveKind.PLACEMENT, _always, "always live"),
    Rule(
        rf"domain\.devices\.disks{_NAMED}",
        LiveKind.DISK,
        _disk,
        "add/remove when its volume is hotpluggable; a CD-ROM drive's removal needs a restart",
    ),
    Rule(
        rf"volumes{_NAMED}",
        LiveKind.DISK,
        _volume_source,
        "add/remove/swap a hotpluggable volume (CD-ROM media change included)",
    ),
    Rule(
        rf"domain\.devices\.interfaces{_NAMED}",
        LiveKind.INTERFACE,
        _interface,
        "add, state up/down/absent; model, MAC or binding changes need a restart",
    ),
    Rule(
        rf"networks{_NAMED}",
        LiveKind.INTERFACE,
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
