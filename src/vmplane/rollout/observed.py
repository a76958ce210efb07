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
from vmplane.rollout.fields import CPU_SOCKETS, MEMORY_GUEST, disk_path, interface_path, volume_path

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
    """Derive the planner's view from a VMI status; ``running_wire`` is the VMI spec in wire form."""
    if status is None:
        return Observed()
    failed: dict[str, FailedHotplug] = {}
    cpu_failure = status.condition(HOT_VCPU_CHANGE)
    topology = status.current_cpu_topology
    if cpu_failure is not None and cpu_failure.status == "False" and topology is not None:
        failed[CPU_SOCKETS] = FailedHotplug(topology.sockets, cpu_failure.message or "")
    memory_failure = status.condition(HOT_MEMORY_CHANGE)
    memory = status.memory
    if memory_failure is not None and memory_failure.status == "False" and memory is not None:
        current = memory.guest_current or memory.guest_at_boot
        failed[MEMORY_GUEST] = FailedHotplug(
            str(current) if current is not None else None, memory_failure.message or ""
        )
    for volume in status.volume_status or ():
        if volume.phase == "Failed":
            failed[volume_path(volume.name)] = FailedHotplug(None, volume.message or "")
            failed[disk_path(volume.name)] = FailedHotplug(None, volume.message or "")
    nic_failure = status.condition(HOT_INTERFACE_CHANGE)
    if nic_failure is not None and nic_failure.status == "False" and nic_failure.reason:
        # The reason names the interface; its running value is whatever the VMI spec had before.
        name = nic_failure.reason
        observed_nic = next((i for i in (status.interfaces or ()) if i.name == name), None)
        failed[interface_path(name)] = FailedHotplug(
            None if observed_nic is None else _interface_or_none(running_wire, name),
            nic_failure.message or "",
        )
    return Observed(
        guest_at_boot=memory.guest_at_boot if memory is not None else None,
        failed=failed,
    )


def _interface_or_none(running_wire: Mapping[str, Any], name: str) -> Any:
    devices = running_wire.get("domain", {}).get("devices", {})
    return next((i for i in devices.get("interfaces", []) if i.get("name") == name), None)
