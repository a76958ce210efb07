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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.quantity import Quantity, QuantityError
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "DEFAULT_CPU_ALLOCATION_RATIO",
    "PAGE_TABLE_DIVISOR",
    "QEMU_OVERHEAD_BYTES",
    "NodeUsage",
    "Resources",
    "VmiCache",
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
    totals: dict[str, Resources] = {}
    for vmi in vmis:
        meta = vmi.get("metadata") or {}
        if exclude is not None and (meta.get("namespace", ""), meta.get("name", "")) == exclude:
            continue
        bound = _node_of(vmi)
        if bound is not None:
            totals[bound] = totals.get(bound, Resources()) + _request_of(vmi, cpu_allocation_ratio)
    return totals


def _node_of(vmi: Mapping[str, Any]) -> str | None:
    """The node whose room a VMI takes: the one it is bound to, until its guest is over."""
    status = vmi.get("status") or {}
    node = status.get("nodeName")
    if not isinstance(node, str) or not node or status.get("phase") in _FINAL_PHASES:
        return None
    return node


def _request_of(vmi: Mapping[str, Any], cpu_allocation_ratio: int) -> Resources:
    spec = VirtualMachineInstanceSpec.model_validate(vmi.get("spec") or {})
    return guest_request(spec, cpu_allocation_ratio=cpu_allocation_ratio)


class VmiCache(Protocol):
    """What ``NodeUsage`` reads: an informer's cache of VMIs."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def list(self) -> Sequence[Mapping[str, Any]]: ...

    def on_change(self, handler: Callable[[tuple[str, str]], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Counted:
    node: str
    generation: object
    request: Resources


class NodeUsage:
    """``requested_by_node`` kept current one VMI change at a time, for a component that weighs each
    decision against it.

    The scheduler, the migration planner and the VM controller (is there room for a hotplug?) weigh
    every decision against what each node's VMIs request. Summing and validating every VMI for each
    decision made a fleet's start quadratic: at 10,000 VMs that was more than half of the control
    plane's CPU, and it started fewer than 5 VMs a second. So the sums are kept: ``changed``, called
    by the VMI cache on each change, moves one VMI's request in or out of its node's total. A request
    changes only with its spec, whose every change bumps ``metadata.generation``, so each is computed
    once per generation and allocation ratio.
    """

    def __init__(self, vmis: VmiCache, *, cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO) -> None:
        self._get = vmis.get
        self._ratio = cpu_allocation_ratio
        self._counted: dict[tuple[str, str], _Counted] = {}
        self._totals: dict[str, Resources] = {}
        vmis.on_change(self.changed)
        for vmi in vmis.list():  # what the cache already holds, should it be filled before us
            meta = vmi.get("metadata") or {}
            self.changed((meta.get("namespace", ""), meta.get("name", "")))

    def changed(self, key: tuple[str, str]) -> None:
        """Count VMI ``key`` as it is now in the cache (or not at all, once it is gone or over)."""
        old = self._counted.pop(key, None)
        if old is not None:
            self._totals[old.node] = self._totals[old.node] - old.request
        vmi = self._get(*key)
        node = _node_of(vmi) if vmi is not None else None
        if vmi is None or node is None:
            return
        generation = (vmi.get("metadata") or {}).get("generation")
        if old is not None and generation is not None and old.generation == generation:
            request = old.request
        else:
            request = _request_of(vmi, self._ratio)
        self._counted[key] = _Counted(node, generation, request)
        self._totals[node] = self._totals.get(node, Resources()) + request

    def by_node(
        self,
        *,
        cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
        exclude: tuple[str, str] | None = None,
    ) -> dict[str, Resources]:
        """What ``requested_by_node`` answers for the VMIs in the cache."""
        if cpu_allocation_ratio != self._ratio:
            self._ratio = cpu_allocation_ratio
            for key in list(self._counted):
                self._counted[key] = replace(self._counted[key], generation=None)
                self.changed(key)
        totals = dict(self._totals)
        left_out = self._counted.get(exclude) if exclude is not None else None
        if left_out is not None:
            totals[left_out.node] = totals[left_out.node] - left_out.request
        return {node: total for node, total in totals.items() if total != Resources()}
