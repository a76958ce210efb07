"""What the planner needs from a VMI's observed status: boot memory and failed hotplugs.

A failed hotplug leaves the VMI spec ahead of the guest. The planner plans from what the guest really
has at those paths, so the failure shows as a pending change with the running value the guest has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceStatus
from vmplane.rollout.failures import failed_hotplugs
from vmplane.rollout.fields import CPU_SOCKETS, INTERFACES, MEMORY_GUEST, VOLUMES, disk_path, element_of

__all__ = [
    "HOT_INTERFACE_CHANGE",
    "HOT_MEMORY_CHANGE",
    "HOT_VCPU_CHANGE",
    "FailedHotplug",
    "Observed",
    "observed_from_status",
]

HOT_VCPU_CHANGE = "HotVCPUChange"
HOT_MEMORY_CHANGE = "HotMemoryChange"
# vmplane's own: upstream hot-plugs NICs through a migration and has no condition for a failure.
HOT_INTERFACE_CHANGE = "HotInterfaceChange"


@dataclass(frozen=True, slots=True)
class FailedHotplug:
    """A live change the hypervisor refused: the value the guest really has, and why."""

    observed: Any
    message: str


@dataclass(frozen=True, slots=True)
class Observed:
    """The observed facts the planner reads."""

    guest_at_boot: Quantity | None = None
    failed: Mapping[str, FailedHotplug] = field(default_factory=dict)


def observed_from_status(
    status: VirtualMachineInstanceStatus | None, running_wire: Mapping[str, Any]
) -> Observed:
    """Derive the planner's view from a VMI status; ``running_wire`` is the VMI spec in wire form.

    Which paths failed comes from the one decoder (``rollout.failures``); what the guest has there
    from the observed topology, memory and interfaces.
    """
    if status is None:
        return Observed()
    failed: dict[str, FailedHotplug] = {}
    topology, memory = status.current_cpu_topology, status.memory
    for path, message in failed_hotplugs(status).items():
        element = element_of(path)
        if path == CPU_SOCKETS and topology is not None:
            failed[path] = FailedHotplug(topology.sockets, message)
        elif path == MEMORY_GUEST and memory is not None:
            current = memory.guest_current or memory.guest_at_boot
            failed[path] = FailedHotplug(str(current) if current is not None else None, message)
        elif element is not None and element[0] == VOLUMES:
            # The disk of the same name stands or falls with its volume: neither reached the guest.
            failed[path] = FailedHotplug(None, message)
            failed[disk_path(element[1])] = FailedHotplug(None, message)
        elif element is not None and element[0] == INTERFACES:
            # The running value is whatever the VMI spec had before, if the guest has the NIC at all.
            name = element[1]
            observed_nic = next((i for i in (status.interfaces or ()) if i.name == name), None)
            failed[path] = FailedHotplug(
                None if observed_nic is None else _interface_or_none(running_wire, name), message
            )
    return Observed(
        guest_at_boot=memory.guest_at_boot if memory is not None else None,
        failed=failed,
    )


def _interface_or_none(running_wire: Mapping[str, Any], name: str) -> Any:
    devices = running_wire.get("domain", {}).get("devices", {})
    return next((i for i in devices.get("interfaces", []) if i.get("name") == name), None)
