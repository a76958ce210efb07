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
from vmplane.api.guest_ops import AGENT_CONNECTED, PAUSED, PAUSED_BY_USER
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
from vmplane.hypervisor.base import MachineSpec, MachineState, ObservedMachine
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
    "ATTACHED_TO_NODE",
    "FINAL_PHASES",
    "HOTPLUG_FAILED",
    "READY",
    "attached_to_node",
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
    # Seen only around a migration, whose steps report instead (``agent.migration_plan``).
    MachineState.INCOMING: VMIPhase.SCHEDULED,
    MachineState.MIGRATED: VMIPhase.RUNNING,
}
_HOT = {CPU_SOCKETS: HOT_VCPU_CHANGE, MEMORY_GUEST: HOT_MEMORY_CHANGE}
# Conditions derived here; any other (PodScheduled, ...) is kept as it is.
_OWNED = frozenset(
    {
        READY,
        PAUSED,
        AGENT_CONNECTED,
        HOT_VCPU_CHANGE,
        HOT_MEMORY_CHANGE,
        HOT_INTERFACE_CHANGE,
        LIVE_MIGRATABLE,
    }
)


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
    if running and observed.agent_connected:
        conditions.append(Condition(type=AGENT_CONNECTED, status="True"))  # as upstream: no reason
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


#: Upstream's phase of a hot-plugged volume whose image is ready on the node, not yet in the guest.
ATTACHED_TO_NODE = "AttachedToNode"
#: Upstream's reason and message for a hot-plugged volume that reached the guest.
VOLUME_READY = "VolumeReady"
VOLUME_READY_MESSAGE = "Successfully attach hotplugged volume {name} to VM"
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd"}


def _targets(desired: MachineSpec | None) -> dict[str, str]:
    """Each disk's target as libvirt (and so upstream's volumeStatus) names it: ``vd<letter>`` for virtio,
    ``sd<letter>`` for SATA and SCSI, lettered in the order of the disks of the same prefix."""
    counts: dict[str, int] = {}
    targets: dict[str, str] = {}
    for disk in desired.disks if desired is not None else ():
        prefix = _TARGET_PREFIX[disk.bus if not disk.cdrom or disk.bus != "virtio" else "sata"]
        index = counts.get(prefix, 0)
        counts[prefix] = index + 1
        letters = ""
        while True:  # a, ..., z, aa, ab, ... as libvirt letters them
            letters = chr(ord("a") + index % 26) + letters
            index = index // 26 - 1
            if index < 0:
                break
        targets[disk.name] = prefix + letters
    return targets


def _volumes(
    desired: MachineSpec | None, observed: ObservedMachine, failures: Mapping[str, str], in_flight: set[str]
) -> list[VolumeStatus]:
    """One entry per volume (an empty CD-ROM drive has none), with upstream's phases: ``Pending`` until
    the guest has it, ``Ready``, ``Detaching`` while it is unplugged (or ejected), ``Failed``."""
    have = {d.name: d for d in observed.disks}
    want = {d.name: d for d in desired.disks} if desired is not None else {}
    targets = _targets(desired)
    names = list(want) + sorted(set(have) - set(want))
    volumes = []
    for name in names:
        field = volume_path(name)
        wanted, present = want.get(name), have.get(name)
        hotplug: dict[str, str] | None = {} if wanted is not None and wanted.hotpluggable else None
        common = {"name": name, "target": targets.get(name), "hotplug_volume": hotplug}
        if field in failures:
            volumes.append(
                VolumeStatus(**common, phase="Failed", reason=HOTPLUG_FAILED, message=failures[field])
            )
        elif field in in_flight:
            leaving = present is not None and bool(present.path) and (wanted is None or wanted.empty)
            volumes.append(
                VolumeStatus(**common, phase="Detaching" if leaving or wanted is None else "Pending")
            )
        elif present is not None and (present.path or not present.cdrom):
            ready = (
                {"reason": VOLUME_READY, "message": VOLUME_READY_MESSAGE.format(name=name)}
                if hotplug is not None
                else {}
            )
            volumes.append(VolumeStatus(**common, phase="Ready", **ready))
    return volumes


def attached_to_node(status: VirtualMachineInstanceStatus, name: str) -> VirtualMachineInstanceStatus:
    """``status`` with the pending volume ``name`` in phase ``AttachedToNode``: the agent prepared its
    image on this host and is about to plug it (upstream's phase once the volume reaches the node)."""
    volumes = [
        v.model_copy(update={"phase": ATTACHED_TO_NODE}) if v.name == name and v.phase == "Pending" else v
        for v in status.volume_status or ()
    ]
    return status.model_copy(update={"volume_status": volumes or None})


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


def _interfaces(observed: ObservedMachine) -> list[VMIInterfaceStatus]:
    """The NICs QEMU has, each with what the guest agent reports for its MAC (upstream's
    ``infoSource: domain, guest-agent``, first address in ``ipAddress``). Guest interfaces of no NIC
    (bridges, tunnels) are left out: every entry keeps a ``name``, which the status's readers key on."""
    by_mac = {g.mac: g for g in observed.guest_interfaces if g.mac}
    interfaces = []
    for nic in observed.nics:
        link = "up" if nic.link_up else "down"
        seen = by_mac.pop(nic.mac.lower(), None)
        if seen is None:
            interfaces.append(
                VMIInterfaceStatus(name=nic.name, mac=nic.mac, link_state=link, info_source="domain")
            )
            continue
        interfaces.append(
            VMIInterfaceStatus(
                name=nic.name,
                mac=nic.mac,
                link_state=link,
                info_source="domain, guest-agent",
                interface_name=seen.name,
                ip_address=seen.ip_addresses[0] if seen.ip_addresses else None,
                ip_addresses=list(seen.ip_addresses) or None,
            )
        )
    return interfaces


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
            "interfaces": _interfaces(observed) or None,
            "phase_transition_timestamps": _transition(previous, phase, now),
            "hotplug_failures": encode_failures(current_failures),
            "migration_method": movable.method,
        }
    )
