"""A VMI's status from what the hypervisor observed, never from what was asked. Pure.

Failed hotplugs are recorded exactly as the planner reads them (``rollout.observed``): the condition
``HotVCPUChange``/``HotMemoryChange`` False with the hypervisor's message, a ``volumeStatus`` entry in
phase ``Failed``, or ``HotInterfaceChange`` False whose reason names the interface.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from vmplane.agent.hypervisor import MachineState, ObservedMachine
from vmplane.api.meta import Condition
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import (
    CPUTopology,
    MemoryStatus,
    VirtualMachineInstance,
    VirtualMachineInstanceStatus,
    VMIInterfaceStatus,
    VMIPhase,
    VolumeStatus,
)
from vmplane.rollout.conditions import merge_conditions
from vmplane.rollout.observed import HOT_INTERFACE_CHANGE, HOT_MEMORY_CHANGE, HOT_VCPU_CHANGE

__all__ = ["CPU_FIELD", "MEMORY_FIELD", "failures_of", "machine_status"]

CPU_FIELD = "domain.cpu.sockets"
MEMORY_FIELD = "domain.memory.guest"
_VOLUME = "volumes[name="
_INTERFACE = "domain.devices.interfaces[name="
_PHASES = {
    MachineState.STARTING: VMIPhase.SCHEDULED,
    MachineState.RUNNING: VMIPhase.RUNNING,
    MachineState.STOPPED: VMIPhase.SUCCEEDED,
    MachineState.CRASHED: VMIPhase.FAILED,
}
# Conditions this module owns; the rest (PodScheduled, ...) are kept as they are.
_OWNED = frozenset({"Ready", HOT_VCPU_CHANGE, HOT_MEMORY_CHANGE, HOT_INTERFACE_CHANGE})


def _named(field: str, prefix: str) -> str | None:
    return field[len(prefix) : -1] if field.startswith(prefix) and field.endswith("]") else None


def failures_of(status: VirtualMachineInstanceStatus | None) -> dict[str, str]:
    """The fields whose last hotplug failed, with the message (read back from a status)."""
    if status is None:
        return {}
    failed: dict[str, str] = {}
    for type_, field in ((HOT_VCPU_CHANGE, CPU_FIELD), (HOT_MEMORY_CHANGE, MEMORY_FIELD)):
        condition = status.condition(type_)
        if condition is not None and condition.status == "False":
            failed[field] = condition.message or ""
    nic = status.condition(HOT_INTERFACE_CHANGE)
    if nic is not None and nic.status == "False" and nic.reason:
        failed[f"{_INTERFACE}{nic.reason}]"] = nic.message or ""
    for volume in status.volume_status or ():
        if volume.phase == "Failed":
            failed[f"{_VOLUME}{volume.name}]"] = volume.message or ""
    return failed


def _conditions(
    observed: ObservedMachine, failures: Mapping[str, str], in_flight: Collection[str]
) -> list[Condition]:
    running = observed.state is MachineState.RUNNING
    conditions = [
        Condition(
            type="Ready",
            status="True" if running else "False",
            reason=None if running else "GuestNotRunning",
            message=None if running else observed.reason or observed.state.value,
        )
    ]
    for type_, field in ((HOT_VCPU_CHANGE, CPU_FIELD), (HOT_MEMORY_CHANGE, MEMORY_FIELD)):
        if field in failures:
            conditions.append(
                Condition(type=type_, status="False", reason="HotplugFailed", message=failures[field])
            )
        elif field in in_flight:
            conditions.append(Condition(type=type_, status="True"))
    for field, message in failures.items():
        name = _named(field, _INTERFACE)
        if name is not None:
            conditions.append(
                Condition(type=HOT_INTERFACE_CHANGE, status="False", reason=name, message=message)
            )
            break
    return conditions


def machine_status(
    vmi: VirtualMachineInstance,
    observed: ObservedMachine,
    *,
    failures: Mapping[str, str],
    in_flight: Collection[str] = (),
    now: str,
) -> VirtualMachineInstanceStatus:
    """The VMI status that reports ``observed``, the failures and the hotplugs in flight."""
    previous = vmi.status or VirtualMachineInstanceStatus()
    memory = vmi.spec.domain.memory
    requested = memory.guest if memory is not None else None
    before = previous.memory or MemoryStatus()
    if MEMORY_FIELD in failures:
        requested = before.guest_requested
    observed_memory = (
        Quantity.from_bytes(observed.memory_bytes) if observed.memory_bytes else before.guest_current
    )
    volumes = [VolumeStatus(name=d.name, target=d.name, phase="Ready") for d in observed.disks] + [
        VolumeStatus(name=name, target=name, phase="Failed", reason="HotplugFailed", message=message)
        for field, message in failures.items()
        if (name := _named(field, _VOLUME)) is not None and name not in {d.name for d in observed.disks}
    ]
    kept = [c for c in previous.conditions or () if c.type not in _OWNED]
    conditions = merge_conditions(
        previous.conditions or (), kept + _conditions(observed, failures, in_flight), now=now
    )
    return previous.model_copy(
        update={
            "phase": _PHASES[observed.state],
            "reason": observed.reason or None
            if observed.state in (MachineState.CRASHED, MachineState.STOPPED)
            else None,
            "current_cpu_topology": CPUTopology(
                sockets=observed.sockets, cores=observed.cores, threads=observed.threads
            ),
            "memory": MemoryStatus(
                guest_at_boot=before.guest_at_boot, guest_current=observed_memory, guest_requested=requested
            ),
            "volume_status": volumes or None,
            "interfaces": [
                VMIInterfaceStatus(
                    name=n.name, mac=n.mac, link_state="up" if n.link_up else "down", info_source="domain"
                )
                for n in observed.nics
            ]
            or None,
            "conditions": conditions,
        }
    )
