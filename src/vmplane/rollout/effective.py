"""The effective spec: a VM's template with the cluster defaults resolved, and where each value came from.

Provenance matters to the planner: a value from a cluster default that differs from the running guest
is reported with ``source: cluster``; a ratio-derived hotplug ceiling (``headroom``) is recomputed at
every boot and is never by itself a reason to restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from vmplane.api.defaults import (
    default_cpu_topology,
    default_guest_memory,
    default_max_guest,
    default_max_sockets,
)
from vmplane.api.domain import CPU, Machine
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = ["EffectiveSpec", "Provenance", "effective_spec"]


class Provenance(str, Enum):
    """Where a value of the effective spec came from."""

    TEMPLATE = "template"
    CLUSTER = "cluster"
    HEADROOM = "headroom"
    INSTANCETYPE = "instancetype"
    PREFERENCE = "preference"


@dataclass(frozen=True, slots=True)
class EffectiveSpec:
    """The spec a VMI would boot with now; ``sources`` names every path not taken from the template."""

    spec: VirtualMachineInstanceSpec
    sources: Mapping[str, Provenance] = field(default_factory=dict)

    def source_of(self, path: str) -> Provenance:
        """Where the value at ``path`` came from."""
        return self.sources.get(path, Provenance.TEMPLATE)


def effective_spec(
    template: VirtualMachineInstanceSpec,
    config: KubeVirtConfiguration,
    *,
    sources_so_far: Mapping[str, Provenance] | None = None,
) -> EffectiveSpec:
    """Resolve topology, guest memory, CPU model, machine type, eviction strategy and hotplug ceilings.

    ``template`` may already be expanded by an instance type and preference
    (``rollout.instancetypes.expand``); ``sources_so_far`` then says which paths those gave.
    """
    spec = default_guest_memory(default_cpu_topology(template))
    sources: dict[str, Provenance] = dict(sources_so_far or {})
    domain = spec.domain
    cpu = domain.cpu or CPU()
    memory = domain.memory

    if cpu.model is None and config.cpu_model:
        cpu = cpu.model_copy(update={"model": config.cpu_model})
        sources["domain.cpu.model"] = Provenance.CLUSTER
    # A ceiling the template leaves unset is defaulted, even when no hotplug is possible and it stays
    # unset: its appearing or vanishing with the guest's size is never a change of its own.
    luc = config.live_update_configuration
    if cpu.max_sockets is None:
        max_sockets = default_max_sockets(spec, config)
        if max_sockets is not None:
            cpu = cpu.model_copy(update={"max_sockets": max_sockets})
        from_cluster = max_sockets is not None and luc is not None and luc.max_cpu_sockets == max_sockets
        sources["domain.cpu.maxSockets"] = Provenance.CLUSTER if from_cluster else Provenance.HEADROOM
    if memory is None or memory.max_guest is None:
        max_guest = default_max_guest(spec, config)
        if memory is not None and max_guest is not None:
            memory = memory.model_copy(update={"max_guest": max_guest})
        from_cluster = max_guest is not None and luc is not None and luc.max_guest is not None
        sources["domain.memory.maxGuest"] = Provenance.CLUSTER if from_cluster else Provenance.HEADROOM
    machine = domain.machine
    machine_type = config.default_machine_type
    if (machine is None or machine.type is None) and machine_type:
        machine = (machine or Machine()).model_copy(update={"type": machine_type})
        sources["domain.machine.type"] = Provenance.CLUSTER

    domain = domain.model_copy(update={"cpu": cpu, "memory": memory, "machine": machine})
    update: dict[str, object] = {"domain": domain}
    if spec.eviction_strategy is None and config.eviction_strategy is not None:
        update["eviction_strategy"] = config.eviction_strategy
        sources["evictionStrategy"] = Provenance.CLUSTER
    return EffectiveSpec(spec.model_copy(update=update), sources)
