"""A VMI's status from what the hypervisor observed, never from what was asked. Pure.

One function derives the whole status of a VMI that has a machine (``machine_status``); the agent only
adds the failures its operations met. Failed hotplugs are recorded once, typed, in
``status.hotplugFailures`` (``rollout.failures``, whose decoder the agent and the planner share),
with the observed topology/memory beside them; for people and KubeVirt tooling the same failures
also show as upstream does: ``HotVCPUChange``/``HotMemoryChange`` False with the hypervisor's
message, a ``volumeStatus`` entry in phase ``Failed``, ``HotInterfaceChange`` False whose reason
names the (first) interface. A failure stays until the spec and the guest agree again (the change
was reverted, or undone by the guest), and while it stays the agent does not retry that path.
"""

from __future__ import annotations

from collections.abc import Mapping

from vmplane.agent.hotplug import differing_fields
from vmplane.agent.hypervisor import MachineSpec, MachineState, ObservedMachine
from vmplane.api.guest_ops import PAUSED, PAUSED_BY_USER
from vmplane.api.meta import Condition
from vmplane.api.migratable import LIVE_MIGRATABLE, MigrationSupport, migratability
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
from vmplane.rollout.failures import encode_failures
from vmplane.rollout.fields import (
    CPU_SOCKETS,
    INTERFACES,
    MEMORY_GUEST,
    element_of,
    volume_path,
)
from vmplane.rollout.observed import HOT_INTERFACE_CHANGE, HOT_MEMORY_CHANGE, HOT_VCPU_CHANGE

__all__ = [
    "FINAL_PHASES",
    "HOTPLUG_FAILED",
    "READY",
    "machine_status",
    "phase_status",
    "running_differences",
]

READY = "Ready"
HOTPLUG_FAILED = "HotplugFailed"
FINAL_PHASES = frozenset({VMIPhase.SUCCEEDED, VMIPhase.FAILED})
_PHASES = {
    MachineState.STARTING: VMIPhase.SCHEDULED,
    MachineState.RUNNING: VMIPhase.RUNNING,
    MachineState.STOPPED: VMIPhase.SUCCEEDED,
    MachineState.CRASHED: VMIPhase.FAILED,
}
_HOT = {CPU_SOCKETS: HOT_VCPU_CHANGE, MEMORY_GUEST: HOT_MEMORY_CHANGE}
# Conditions derived here; any other (PodScheduled, ...) is kept as it is.
_OWNED = frozenset({READY, PAUSED, HOT_VCPU_CHANGE, HOT_MEMORY_CHANGE, HOT_INTERFACE_CHANGE, LIVE_MIGRATABLE})


def _conditions(
    observed: ObservedMachine, failures: Mapping[str, str], in_flight: set[str]
) -> list[Condition]:
    running = observed.state is MachineState.RUNNING
    conditions = [
        Condition(type=READY, status="True")
        if running
        else Condition(
            type=READY,
            status="False",
            reason="GuestNotRunning",
            message=observed.reason or observed.state.value,
        )
    ]
    if running and observed.paused:
        conditions.append(
            Condition(type=PAUSED, status="True", reason=PAUSED_BY_USER, message="VMI was paused by user")
        )
    for field, type_ in _HOT.items():
        if field in failures:
            conditions.append(
                Condition(type=type_, status="False", reason=HOTPLUG_FAILED, message=failures[field])
            )
        elif field in in_flight:
            conditions.append(Condition(type=type_, status="True"))  # as upstream: no reason, no message
    nics = sorted(
        (n[1], m) for f, m in failures.items() if (n := element_of(f)) is not None and n[0] == INTERFACES
    )
    if nics:
        message = "; ".join(f"{name}: {text}" for name, text in nics) if len(nics) > 1 else nics[0][1]
        conditions.append(
            Condition(type=HOT_INTERFACE_CHANGE, status="False", reason=nics[0][0], message=message)
        )
    return conditions


def _volumes(
    desired: MachineSpec | None, observed: ObservedMachine, failures: Mapping[str, str], in_flight: set[str]
) -> list[VolumeStatus]:
    have = {d.name for d in observed.disks}
    wanted = [d.name for d in desired.disks] if desired is not None else []
    names = wanted + sorted(have - set(wanted))
    volumes = []
    for name in names:
        field = volume_path(name)
        if field in failures:
            volumes.append(
                VolumeStatus(name=name, phase="Failed", reason=HOTPLUG_FAILED, message=failures[field])
            )
        elif field in in_flight:
            volumes.append(VolumeStatus(name=name, phase="Detaching" if name in have else "Pending"))
        elif name in have:
            volumes.append(VolumeStatus(name=name, phase="Ready"))
    return volumes


def _memory(
    vmi: VirtualMachineInstance, before: MemoryStatus, observed: ObservedMachine, differing: set[str]
) -> MemoryStatus:
    memory = vmi.spec.domain.memory
    spec_guest = memory.guest if memory is not None else None
    # guestRequested follows the spec once the hypervisor has done it, never while in flight.
    requested = (
        spec_guest if MEMORY_GUEST not in differing and spec_guest is not None else before.guest_requested
    )
    return MemoryStatus(
        guest_at_boot=before.guest_at_boot,
        guest_current=Quantity.from_bytes(observed.memory_bytes),
        guest_requested=requested,
    )


def running_differences(desired: MachineSpec | None, observed: ObservedMachine) -> set[str]:
    """The paths where a running guest lacks what its spec says (none unless it runs)."""
    if desired is None or observed.state is not MachineState.RUNNING:
        return set()
    return differing_fields(desired, observed)


def _transition(
    previous: VirtualMachineInstanceStatus, phase: VMIPhase, now: str
) -> list[dict[str, str]] | None:
    stamps = list(previous.phase_transition_timestamps or ())
    if previous.phase is not phase:
        stamps.append({"phase": phase.value, "phaseTransitionTimestamp": now})
    return stamps or None


def phase_status(
    vmi: VirtualMachineInstance, phase: VMIPhase, *, reason: str | None, now: str
) -> VirtualMachineInstanceStatus:
    """The status of a VMI put in ``phase`` without a machine to observe (failed start, lost machine)."""
    previous = vmi.status or VirtualMachineInstanceStatus()
    running = phase is VMIPhase.RUNNING
    ready = Condition(
        type=READY, status="True" if running else "False", reason=None if running else "GuestNotRunning"
    )
    kept = [c for c in previous.conditions or () if c.type not in _OWNED]
    return previous.model_copy(
        update={
            "phase": phase,
            "reason": reason,
            "conditions": merge_conditions(previous.conditions or (), [*kept, ready], now=now),
            "phase_transition_timestamps": _transition(previous, phase, now),
        }
    )


def machine_status(
    vmi: VirtualMachineInstance,
    observed: ObservedMachine,
    *,
    desired: MachineSpec | None,
    failures: Mapping[str, str],
    now: str,
    support: MigrationSupport = MigrationSupport(),  # noqa: B008 - frozen, shared safely
) -> VirtualMachineInstanceStatus:
    """The status that reports ``observed``: phase, topology, memory, volumes, interfaces, conditions.

    ``LiveMigratable`` and ``migrationMethod`` say whether the guest can move from this node, whose
    migration abilities are ``support`` (by default: none).

    ``desired`` is the machine of the VMI spec now (None if the spec cannot be translated: then nothing
    is in flight); where it differs from ``observed`` a hotplug is in flight (``HotVCPUChange``/
    ``HotMemoryChange`` True) unless that path is in ``failures``. Failures of paths where the two
    agree are dropped. A VMI in a final phase keeps it.
    """
    previous = vmi.status or VirtualMachineInstanceStatus()
    if previous.phase in FINAL_PHASES:
        return previous
    phase = _PHASES[observed.state]
    if observed.state not in (MachineState.STARTING, MachineState.RUNNING):
        # An ended machine reports only how it ended: keep the last observed devices.
        return phase_status(vmi, phase, reason=observed.reason or None, now=now)
    differing = running_differences(desired, observed)
    current_failures = {f: m for f, m in failures.items() if f in differing}
    in_flight = differing - set(current_failures)
    kept = [c for c in previous.conditions or () if c.type not in _OWNED]
    movable = migratability(vmi.spec, dict(vmi.metadata.annotations or {}), support)
    conditions = merge_conditions(
        previous.conditions or (),
        [*kept, *_conditions(observed, current_failures, in_flight), movable.condition],
        now=now,
    )
    interfaces = [
        VMIInterfaceStatus(
            name=n.name, mac=n.mac, link_state="up" if n.link_up else "down", info_source="domain"
        )
        for n in observed.nics
    ]
    return previous.model_copy(
        update={
            "phase": phase,
            "reason": None,
            "conditions": conditions,
            "current_cpu_topology": CPUTopology(
                sockets=observed.sockets, cores=observed.cores, threads=observed.threads
            ),
            "memory": _memory(vmi, previous.memory or MemoryStatus(), observed, differing),
            "volume_status": _volumes(desired, observed, current_failures, in_flight) or None,
            "interfaces": interfaces or None,
            "phase_transition_timestamps": _transition(previous, phase, now),
            "hotplug_failures": encode_failures(current_failures),
            "migration_method": movable.method,
        }
    )
