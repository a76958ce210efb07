"""A VM's effective spec: its template expanded by its instance type and preference, then the cluster
defaults, with the provenance of every value (``rollout.effective``, ``rollout.instancetypes``)."""

from __future__ import annotations

from dataclasses import dataclass

from vmplane.api.errors import FieldCause
from vmplane.api.instancetype_refs import Lookup, Resolution, resolve
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.vm import VirtualMachine
from vmplane.rollout.effective import EffectiveSpec, effective_spec
from vmplane.rollout.instancetypes import expand

__all__ = ["VMEffective", "vm_effective"]


@dataclass(frozen=True, slots=True)
class VMEffective:
    """The effective spec (None while it cannot be built), the references resolved, and why not."""

    effective: EffectiveSpec | None
    resolution: Resolution
    causes: list[FieldCause]


def vm_effective(vm: VirtualMachine, config: KubeVirtConfiguration, lookup: Lookup) -> VMEffective:
    """Resolve the VM's references through ``lookup`` and expand its template with them.

    A reference that does not resolve yet leaves the effective spec None (the VM cannot start) but
    is not a cause: upstream admits a VM before its instance type exists.
    """
    resolution = resolve(vm, lookup)
    if resolution.causes:
        return VMEffective(None, resolution, resolution.causes)
    if resolution.missing:
        return VMEffective(None, resolution, [])
    expansion = expand(vm.spec.template.spec, resolution.instancetype, resolution.preference)
    if expansion.causes:
        return VMEffective(None, resolution, expansion.causes)
    effective = effective_spec(expansion.spec, config, sources_so_far=expansion.sources)
    return VMEffective(effective, resolution, [])
