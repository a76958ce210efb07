"""What a VMI takes of its node: CPU and memory, as the Kubernetes scheduler counts a virt-launcher Pod.

One definition for the scheduler (does the VMI fit on a node?) and for the rollout planner (can the
node hold a live CPU or memory hotplug?), so the two never disagree.

**vCPUs.** A VMI counts its *current* vCPUs, ``sockets x cores x threads``, not the ``maxSockets``
headroom: KubeVirt's launcher Pod requests the current count (a hotplug beyond it is a new request,
checked when it happens), and QEMU runs no thread for an empty hotplug slot. As in KubeVirt, a VMI
without ``resources.requests.cpu`` requests ``vCPUs / cpuAllocationRatio`` CPUs (the KubeVirt
``developerConfiguration.cpuAllocationRatio``, default 10, so 100m per vCPU), rounded up to a
millicore; an explicit request is taken as it is.

**Memory.** The guest memory (``memory.guest``, else ``resources.requests.memory``) plus a per-guest
overhead of :data:`QEMU_OVERHEAD_BYTES` (32 MiB) and one 512th of the guest memory. The fixed part is
what a QEMU process needs beside guest RAM (its code, heap, device models and I/O buffers): KubeVirt
counts 30 MiB for QEMU in ``GetMemoryOverhead`` and an idle 256 MiB guest here is 42-46 MB resident,
most of it guest pages; vmplane adds neither libvirt's nor virt-launcher's terms because it runs
neither. The proportional part is the host page tables for the guest RAM (KubeVirt's
``pagetables = guest / 512``). The overhead does not depend on the vCPU count, so a CPU hotplug never
changes the memory request and a memory hotplug never changes the CPU request.

Hotplug headroom (``maxGuest``) is not counted: QEMU allocates none of it until it is plugged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.quantity import Quantity, QuantityError
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "DEFAULT_CPU_ALLOCATION_RATIO",
    "PAGE_TABLE_DIVISOR",
    "QEMU_OVERHEAD_BYTES",
    "GuestRequests",
    "Resources",
    "allocatable_of",
    "cpu_allocation_ratio",
    "guest_request",
    "memory_overhead",
    "requested_by_node",
    "vcpus",
]

QEMU_OVERHEAD_BYTES = 32 * 1024 * 1024
PAGE_TABLE_DIVISOR = 512
#: KubeVirt's default ``cpuAllocationRatio``.
DEFAULT_CPU_ALLOCATION_RATIO = 10
# A VMI in a final phase has no guest any more; its node has the room back.
_FINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU in millicores and memory in bytes."""

    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_bytes - other.memory_bytes)

    def short_of(self, room: Resources) -> list[str]:
        """The resources (``cpu``, ``memory``, in the scheduler's order) this needs more of than ``room``."""
        names = []
        if self.cpu_millis > room.cpu_millis:
            names.append("cpu")
        if self.memory_bytes > room.memory_bytes:
            names.append("memory")
        return names


def cpu_allocation_ratio(config: KubeVirtConfiguration) -> int:
    """``developerConfiguration.cpuAllocationRatio``, or KubeVirt's default."""
    developer = config.developer_configuration
    ratio = developer.cpu_allocation_ratio if developer is not None else None
    return ratio or DEFAULT_CPU_ALLOCATION_RATIO


def vcpus(spec: VirtualMachineInstanceSpec) -> int:
    """The current vCPU count: sockets x cores x threads (each 1 when unset)."""
    cpu = spec.domain.cpu
    if cpu is None:
        return 1
    return (cpu.sockets or 1) * (cpu.cores or 1) * (cpu.threads or 1)


def _guest_memory(spec: VirtualMachineInstanceSpec) -> int:
    memory = spec.domain.memory
    if memory is not None and memory.guest is not None:
        return memory.guest.bytes()
    requests = spec.domain.resources.requests if spec.domain.resources else None
    if requests and "memory" in requests:
        return requests["memory"].bytes()
    return 0


def memory_overhead(guest_bytes: int) -> int:
    """The memory a guest of ``guest_bytes`` costs its host beyond its RAM (see the module docstring)."""
    return QEMU_OVERHEAD_BYTES + math.ceil(guest_bytes / PAGE_TABLE_DIVISOR)


def guest_request(
    spec: VirtualMachineInstanceSpec, *, cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO
) -> Resources:
    """What a VMI of ``spec`` requests of its node."""
    requests = spec.domain.resources.requests if spec.domain.resources else None
    if requests and "cpu" in requests:
        cpu = requests["cpu"].milli()
    else:
        cpu = math.ceil(vcpus(spec) * 1000 / max(cpu_allocation_ratio, 1))
    guest = _guest_memory(spec)
    return Resources(cpu, guest + memory_overhead(guest))


def allocatable_of(node: Mapping[str, Any]) -> Resources | None:
    """A Node's ``status.allocatable`` CPU and memory; None when it declares either not (a Node
    written by hand rather than by an agent: vmplane does not limit it)."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    with contextlib.suppress(QuantityError, KeyError, TypeError):
        return Resources(
            Quantity.parse(allocatable["cpu"]).milli(), Quantity.parse(allocatable["memory"]).bytes()
        )
    return None


def requested_by_node(
    vmis: Iterable[Mapping[str, Any]],
    *,
    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
    exclude: tuple[str, str] | None = None,
) -> dict[str, Resources]:
    """The sum of the requests of the VMIs bound to each node and not yet final (``exclude``: the
    ``(namespace, name)`` of one VMI to leave out, the one whose change is being judged)."""
    return GuestRequests().by_node(vmis, cpu_allocation_ratio=cpu_allocation_ratio, exclude=exclude)


class GuestRequests:
    """``requested_by_node`` for a caller that sums the same VMIs again and again, computing each
    VMI's request once per version of its spec.

    The scheduler, the migration planner and the VM controller sum the requests of every bound VMI for
    each decision they make. Validating every VMI's spec each time made a fleet's start quadratic in
    pydantic work: at 10,000 VMs that was more than half of the control plane's CPU. A VMI's request
    changes only with its spec (and the allocation ratio), and a spec change bumps
    ``metadata.generation``, so the request is remembered by uid and generation. Each sum keeps only
    the VMIs it counted, so a deleted VMI's entry goes with the next one.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[object, Resources]] = {}

    def by_node(
        self,
        vmis: Iterable[Mapping[str, Any]],
        *,
        cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
        exclude: tuple[str, str] | None = None,
    ) -> dict[str, Resources]:
        """What ``requested_by_node`` answers."""
        counted: dict[str, tuple[object, Resources]] = {}
        totals: dict[str, Resources] = {}
        for vmi in vmis:
            status, meta = vmi.get("status") or {}, vmi.get("metadata") or {}
            node = status.get("nodeName")
            if not node or status.get("phase") in _FINAL_PHASES:
                continue
            if exclude is not None and (meta.get("namespace", ""), meta.get("name", "")) == exclude:
                continue
            uid = str(meta.get("uid") or (meta.get("namespace"), meta.get("name")))
            version = (
                meta.get("generation") or ("resourceVersion", meta.get("resourceVersion")),
                cpu_allocation_ratio,
            )
            entry = self._known.get(uid)
            if entry is None or entry[0] != version:
                spec = VirtualMachineInstanceSpec.model_validate(vmi.get("spec") or {})
                entry = (version, guest_request(spec, cpu_allocation_ratio=cpu_allocation_ratio))
            counted[uid] = entry
            totals[node] = totals.get(node, Resources()) + entry[1]
        self._known = counted
        return totals
