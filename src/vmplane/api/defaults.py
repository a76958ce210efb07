"""VMI defaulting at creation (KubeVirt's mutating webhook), with vmplane's one deliberate difference.

Upstream only gives a VMI hotplug headroom (``maxSockets``, ``maxGuest``) under ``LiveUpdate``; vmplane
gives it under every strategy, so that switching ``Stage`` to ``LiveUpdate`` lets running guests
hotplug without a restart (docs/rollout.md §2).
"""

from __future__ import annotations

from vmplane.api.domain import CPU, Memory
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.memory_hotplug import memory_hotplug_errors
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import CPUTopology, MemoryStatus, VirtualMachineInstanceSpec

__all__ = [
    "MAX_VCPUS",
    "default_cpu_topology",
    "default_guest_memory",
    "default_max_guest",
    "default_max_sockets",
    "initial_cpu_topology",
    "initial_memory_status",
]

# Upstream caps the hotplug ceiling at 512 vCPUs (sockets x cores x threads).
MAX_VCPUS = 512
HOTPLUG_CPU_ARCHITECTURES = ("", "amd64", "s390x")


def default_cpu_topology(spec: VirtualMachineInstanceSpec) -> VirtualMachineInstanceSpec:
    """Give a spec without a topology one socket per requested CPU (limit first, then request), 1x1."""
    cpu = spec.domain.cpu
    if cpu is not None and (cpu.sockets or cpu.cores or cpu.threads):
        return spec
    sockets = 1
    resources = spec.domain.resources
    for source in (resources.limits if resources else None, resources.requests if resources else None):
        if source and "cpu" in source and source["cpu"].to_int() > 0:
            sockets = source["cpu"].to_int()
            break
    topology = (cpu or CPU()).model_copy(update={"sockets": sockets, "cores": 1, "threads": 1})
    return spec.model_copy(update={"domain": spec.domain.model_copy(update={"cpu": topology})})


def default_guest_memory(spec: VirtualMachineInstanceSpec) -> VirtualMachineInstanceSpec:
    """Set ``memory.guest`` from the memory request, else the limit, when it is unset."""
    memory = spec.domain.memory
    if memory is not None and memory.guest is not None:
        return spec
    resources = spec.domain.resources
    guest: Quantity | None = None
    for source in (resources.requests if resources else None, resources.limits if resources else None):
        if source and "memory" in source:
            guest = source["memory"]
            break
    if guest is None:
        return spec
    new_memory = (memory or Memory()).model_copy(update={"guest": guest})
    return spec.model_copy(update={"domain": spec.domain.model_copy(update={"memory": new_memory})})


def default_max_sockets(spec: VirtualMachineInstanceSpec, config: KubeVirtConfiguration) -> int | None:
    """The ``maxSockets`` a VMI gets when its template sets none (None: no CPU hotplug possible)."""
    cpu = spec.domain.cpu
    if cpu is None or (spec.architecture or "") not in HOTPLUG_CPU_ARCHITECTURES:
        return None
    sockets = cpu.sockets or 0
    if sockets == 0:
        return None
    luc = config.live_update_configuration
    max_sockets = luc.max_cpu_sockets if luc is not None and luc.max_cpu_sockets else 0
    if max_sockets and sockets > max_sockets:
        max_sockets = sockets
    if not max_sockets:
        max_sockets = sockets * config.max_hotplug_ratio
    per_socket = (cpu.cores or 0) * (cpu.threads or 0)
    if per_socket and max_sockets * per_socket > MAX_VCPUS:
        max_sockets = max(MAX_VCPUS // per_socket, sockets)
    return max_sockets


def default_max_guest(spec: VirtualMachineInstanceSpec, config: KubeVirtConfiguration) -> Quantity | None:
    """The ``maxGuest`` a VMI gets when its template sets none (None: memory hotplug impossible)."""
    memory = spec.domain.memory
    if memory is None or memory.guest is None:
        return None
    luc = config.live_update_configuration
    if luc is not None and luc.max_guest is not None:
        candidate = luc.max_guest
    else:
        candidate = Quantity.from_bytes(memory.guest.bytes() * config.max_hotplug_ratio)
    return None if memory_hotplug_errors(spec, candidate) else candidate


def initial_cpu_topology(spec: VirtualMachineInstanceSpec) -> CPUTopology | None:
    """``status.currentCPUTopology`` at creation: the spec's topology."""
    cpu = spec.domain.cpu
    if cpu is None:
        return None
    return CPUTopology(sockets=cpu.sockets, cores=cpu.cores, threads=cpu.threads)


def initial_memory_status(spec: VirtualMachineInstanceSpec) -> MemoryStatus | None:
    """``status.memory`` at creation: boot, current and requested all equal the guest size."""
    memory = spec.domain.memory
    if memory is None or memory.guest is None:
        return None
    guest = memory.guest
    return MemoryStatus(guest_at_boot=guest, guest_current=guest, guest_requested=guest)
