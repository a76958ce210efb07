"""Hotplug decisions, as pure functions of what QEMU reported.

The driver asks QEMU (``query-hotpluggable-cpus``, ``query-memory-devices``, ``query-pci``), passes the
replies here, and carries out the plan: no QMP call happens inside a decision, and the tests feed
recorded replies in. A ``PlanError`` is a request the machine cannot satisfy; the driver turns it into
a ``HotplugError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmplane.hypervisor.qemu import naming

__all__ = [
    "MEMORY_BLOCK_BYTES",
    "CpuSlot",
    "Dimm",
    "MemoryPlan",
    "PlanError",
    "cpu_slots",
    "cpu_slots_to_plug",
    "dimms",
    "free_root_ports",
    "next_dimm_index",
    "plan_memory",
]

#: Linux onlines hot-plugged memory in 128 MiB blocks on x86-64; a DIMM of another size cannot be used.
MEMORY_BLOCK_BYTES = 128 << 20

QmpReply = Any  # a decoded QMP ``return`` member


class PlanError(ValueError):
    """The request cannot be met on this machine (the message says why)."""


@dataclass(frozen=True, slots=True)
class CpuSlot:
    """One ``query-hotpluggable-cpus`` entry."""

    driver: str
    props: Mapping[str, int]
    present: bool

    @property
    def socket(self) -> int:
        return self.props.get("socket-id", 0)

    @property
    def order(self) -> tuple[int, ...]:
        return tuple(self.props.get(k, 0) for k in ("socket-id", "die-id", "core-id", "thread-id"))


def cpu_slots(reply: QmpReply) -> list[CpuSlot]:
    return [CpuSlot(s["type"], dict(s["props"]), "qom-path" in s) for s in reply]


def cpu_slots_to_plug(slots: Sequence[CpuSlot], sockets: int) -> list[CpuSlot]:
    """The free slots to fill so that exactly ``sockets`` sockets have vCPUs (lowest free sockets first)."""
    present = {s.socket for s in slots if s.present}
    every = {s.socket for s in slots}
    if sockets < len(present):
        raise PlanError(f"cannot remove vCPUs live: {len(present)} sockets present, {sockets} requested")
    if sockets > len(every):
        raise PlanError(f"{sockets} sockets requested, the machine was booted with room for {len(every)}")
    chosen = present | set(sorted(every - present)[: sockets - len(present)])
    return sorted((s for s in slots if not s.present and s.socket in chosen), key=lambda s: s.order)


@dataclass(frozen=True, slots=True)
class Dimm:
    """A hot-plugged pc-dimm: its device id, size and plug order."""

    id: str
    size: int
    index: int


def dimms(reply: QmpReply) -> list[Dimm]:
    """Hot-plugged vmplane DIMMs from ``query-memory-devices``, oldest first."""
    found = []
    for dev in reply:
        data = dev.get("data", {})
        index = naming.dimm_index(data.get("id") or "")
        if dev.get("type") == "dimm" and data.get("hotplugged") and index is not None:
            found.append(Dimm(data["id"], int(data["size"]), index))
    return sorted(found, key=lambda d: d.index)


def next_dimm_index(present: Iterable[Dimm], pending: Iterable[str]) -> int:
    used = {d.index for d in present} | {i for p in pending if (i := naming.dimm_index(p)) is not None}
    return max(used, default=-1) + 1


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Unplug ``remove`` (newest first), then plug one DIMM of ``add`` bytes if ``add`` > 0."""

    remove: tuple[str, ...] = ()
    add: int = 0


def plan_memory(
    *,
    boot: int,
    plugged: Sequence[Dimm],
    target: int,
    maximum: int,
    free_slots: int,
    block: int = MEMORY_BLOCK_BYTES,
) -> MemoryPlan:
    """How to reach exactly ``target`` bytes: remove the newest DIMMs while above it, then add the rest.

    Only hot-plugged DIMMs can be removed, so the boot size is the floor.
    """
    if target < boot:
        raise PlanError(f"memory {target} is below the boot size {boot}")
    if target > maximum:
        raise PlanError(f"memory {target} is above the maximum {maximum} the machine was booted with")
    current = boot + sum(d.size for d in plugged)
    remove: list[str] = []
    for dimm in sorted(plugged, key=lambda d: d.index, reverse=True):
        if current <= target:
            break
        remove.append(dimm.id)
        current -= dimm.size
    add = target - current
    if add % block:
        raise PlanError(f"memory changes must be multiples of {block >> 20} MiB (difference {add} bytes)")
    if add and free_slots + len(remove) < 1:
        raise PlanError("no free memory slot left; restart the machine to consolidate its memory")
    return MemoryPlan(tuple(remove), add)


def free_root_ports(reply: QmpReply) -> list[str]:
    """vmplane's root ports (``rp<N>``) with nothing plugged in, lowest index first, from ``query-pci``."""
    free: list[tuple[int, str]] = []

    def walk(devices: Iterable[Mapping[str, Any]]) -> None:
        for dev in devices:
            bridge = dev.get("pci_bridge")
            if bridge is None:
                continue
            children = bridge.get("devices", [])
            qdev_id: str = dev.get("qdev_id", "")
            index = qdev_id.removeprefix(naming.ROOT_PORT_PREFIX)
            if qdev_id.startswith(naming.ROOT_PORT_PREFIX) and index.isdigit() and not children:
                free.append((int(index), qdev_id))
            walk(children)

    for bus in reply:
        walk(bus.get("devices", []))
    return [port for _, port in sorted(free)]
