"""Revert: write the running values back into a VM template, so those paths stop being pending."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from vmplane.api.vmi import VirtualMachineInstanceSpec, VirtualMachineInstanceStatus
from vmplane.rollout.fields import CPU_SOCKETS, PARTNERS, element_of, named_path
from vmplane.rollout.observed import observed_from_status
from vmplane.rollout.paths import get_path, set_path, split
from vmplane.rollout.plan import TEMPLATE_SPEC_PREFIX

__all__ = ["revert"]

# The topology is defaulted as a whole or not at all: reverting one of its fields pins all three, so
# the template never ends up with a partial topology the running guest did not boot with.
_TOPOLOGY = (CPU_SOCKETS, "domain.cpu.cores", "domain.cpu.threads")


def _spec_path(path: str) -> str:
    return path.removeprefix(TEMPLATE_SPEC_PREFIX)


def _with_partners(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for path in map(_spec_path, paths):
        out.append(path)
        if path in _TOPOLOGY:
            out.extend(_TOPOLOGY)
        element = element_of(path)
        if element is not None:
            base, name = element
            out.append(named_path(PARTNERS[base], name))
    return list(dict.fromkeys(out))


def revert(
    template: VirtualMachineInstanceSpec,
    running: VirtualMachineInstanceSpec,
    paths: Iterable[str],
    *,
    observed: VirtualMachineInstanceStatus | None = None,
) -> VirtualMachineInstanceSpec:
    """The template with each path (VM- or VMI-spec-relative) set to its running value.

    A disk's volume and an interface's network are reverted with it. A path absent from the running
    spec is removed from the template. Where ``observed`` shows a failed hotplug, the running value is
    what the guest really has (as in the pending change), not what the VMI spec asked for.
    """
    running_wire = running.to_wire()
    for path, failed in observed_from_status(observed, running_wire).failed.items():
        set_path(running_wire, path, copy.deepcopy(failed.observed))
    template_wire = copy.deepcopy(template.to_wire())
    for path in _with_partners(paths):
        split(path)
        set_path(template_wire, path, copy.deepcopy(get_path(running_wire, path)))
    return VirtualMachineInstanceSpec.model_validate(template_wire)
