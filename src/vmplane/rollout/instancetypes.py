"""A VM template expanded by its instance type and preference, as upstream's ``ApplyToVMI``.

The instance type *sets* CPU and memory (and what else it names): a template that sets any of it
itself conflicts, with upstream's message and path. The preference only fills in what the template
leaves unset. Every path either wrote is recorded with its provenance, so the planner can say a
pending change comes from the instance type or the preference rather than from the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.instancetype import InstancetypeSpec, PreferenceSpec
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.effective import Provenance

__all__ = [
    "CONFLICT_MESSAGE",
    "Expansion",
    "conflict_message",
    "expand",
    "preferred_topology",
]

TEMPLATE_SPEC = "spec.template.spec"
#: Upstream's ``conflict.conflictsErrorFmt``.
CONFLICT_MESSAGE = "VM field(s) {paths} conflicts with selected instance type"
#: Upstream's requirement messages (``preference/requirements``).
CPU_REQUIREMENT = (
    "insufficient CPU resources of {have} vCPU provided by instance type, preference requires {need} vCPU"
)
MEMORY_REQUIREMENT = (
    "insufficient Memory resources of {have} provided by instance type, preference requires {need}"
)


def conflict_message(paths: list[str]) -> str:
    """Upstream's message for these conflicting VM paths."""
    return CONFLICT_MESSAGE.format(paths=", ".join(paths))


@dataclass(frozen=True, slots=True)
class Expansion:
    """The expanded template spec, where each value it got came from, and why it cannot be expanded."""

    spec: VirtualMachineInstanceSpec
    sources: dict[str, Provenance] = field(default_factory=dict)
    causes: list[FieldCause] = field(default_factory=list)


def preferred_topology(preference: PreferenceSpec | None) -> str:
    """``sockets``, ``cores`` or ``threads``: where an instance type's vCPUs go (default: sockets)."""
    chosen = preference.cpu.preferred_cpu_topology if preference and preference.cpu else None
    return {"cores": "cores", "preferCores": "cores", "threads": "threads", "preferThreads": "threads"}.get(
        chosen or "", "sockets"
    )


def _instancetype_conflicts(spec: dict[str, Any], instancetype: InstancetypeSpec) -> list[str]:
    domain = spec.get("domain") or {}
    cpu = domain.get("cpu") or {}
    memory = domain.get("memory") or {}
    resources = domain.get("resources") or {}
    paths: list[str] = []
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource in (resources.get(section) or {}):
                paths.append(f"domain.resources.{section}.{resource}")
    paths += [f"domain.cpu.{name}" for name in ("sockets", "cores", "threads") if cpu.get(name)]
    if cpu.get("model") and instancetype.cpu.model is not None:
        paths.append("domain.cpu.model")
    if memory.get("guest") is not None:
        paths.append("domain.memory.guest")
    if memory.get("maxGuest") is not None and instancetype.memory.max_guest is not None:
        paths.append("domain.memory.maxGuest")
    if spec.get("nodeSelector") is not None and instancetype.node_selector is not None:
        paths.append("nodeSelector")
    if domain.get("ioThreadsPolicy") is not None and instancetype.io_threads_policy is not None:
        paths.append("domain.ioThreadsPolicy")
    return sorted(paths)


def _apply_instancetype(
    spec: dict[str, Any],
    instancetype: InstancetypeSpec,
    preference: PreferenceSpec | None,
    sources: dict[str, Provenance],
) -> None:
    domain = spec.setdefault("domain", {})
    cpu = domain.setdefault("cpu", {})
    topology = preferred_topology(preference)
    for name in ("sockets", "cores", "threads"):
        cpu[name] = instancetype.cpu.guest if name == topology else 1
        sources[f"domain.cpu.{name}"] = Provenance.INSTANCETYPE
    if instancetype.cpu.model is not None:
        cpu["model"] = instancetype.cpu.model
        sources["domain.cpu.model"] = Provenance.INSTANCETYPE
    if instancetype.cpu.max_sockets is not None:
        cpu["maxSockets"] = instancetype.cpu.max_sockets
        sources["domain.cpu.maxSockets"] = Provenance.INSTANCETYPE
    memory = domain.setdefault("memory", {})
    memory["guest"] = str(instancetype.memory.guest)
    sources["domain.memory.guest"] = Provenance.INSTANCETYPE
    if instancetype.memory.max_guest is not None:
        memory["maxGuest"] = str(instancetype.memory.max_guest)
        sources["domain.memory.maxGuest"] = Provenance.INSTANCETYPE
    if instancetype.node_selector is not None:
        spec["nodeSelector"] = dict(instancetype.node_selector)
        sources["nodeSelector"] = Provenance.INSTANCETYPE
    if instancetype.io_threads_policy is not None:
        domain["ioThreadsPolicy"] = instancetype.io_threads_policy
        sources["domain.ioThreadsPolicy"] = Provenance.INSTANCETYPE


def _prefer(target: dict[str, Any], key: str, value: Any, path: str, sources: dict[str, Provenance]) -> None:
    """Set ``target[key]`` to the preferred value unless the template already chose one."""
    if value is None or target.get(key) is not None:
        return
    target[key] = value
    sources[path] = Provenance.PREFERENCE


def _apply_device_preferences(
    spec: dict[str, Any], preference: PreferenceSpec, sources: dict[str, Provenance]
) -> None:
    devices_pref = preference.devices
    if devices_pref is None:
        return
    devices = spec.setdefault("domain", {}).setdefault("devices", {})
    for disk in devices.get("disks") or []:
        base = f"domain.devices.disks[name={disk.get('name')}]"
        for target, bus in (
            ("disk", devices_pref.preferred_disk_bus),
            ("cdrom", devices_pref.preferred_cdrom_bus),
            ("lun", devices_pref.preferred_lun_bus),
        ):
            if isinstance(disk.get(target), dict):
                _prefer(disk[target], "bus", bus, f"{base}.{target}.bus", sources)
    for interface in devices.get("interfaces") or []:
        base = f"domain.devices.interfaces[name={interface.get('name')}]"
        _prefer(interface, "model", devices_pref.preferred_interface_model, f"{base}.model", sources)
    for key, value in (
        ("autoattachGraphicsDevice", devices_pref.preferred_autoattach_graphics_device),
        ("autoattachMemBalloon", devices_pref.preferred_autoattach_mem_balloon),
        ("autoattachPodInterface", devices_pref.preferred_autoattach_pod_interface),
        ("autoattachSerialConsole", devices_pref.preferred_autoattach_serial_console),
        ("networkInterfaceMultiqueue", devices_pref.preferred_network_interface_multi_queue),
        ("blockMultiQueue", devices_pref.preferred_block_multi_queue),
        ("rng", devices_pref.preferred_rng),
    ):
        _prefer(devices, key, value, f"domain.devices.{key}", sources)


def _apply_preferences(
    spec: dict[str, Any], preference: PreferenceSpec, sources: dict[str, Provenance]
) -> None:
    domain = spec.setdefault("domain", {})
    _apply_device_preferences(spec, preference, sources)
    if preference.machine is not None and preference.machine.preferred_machine_type is not None:
        _prefer(
            domain.setdefault("machine", {}),
            "type",
            preference.machine.preferred_machine_type,
            "domain.machine.type",
            sources,
        )
    firmware_pref = preference.firmware
    if firmware_pref is not None and (domain.get("firmware") or {}).get("bootloader") is None:
        efi = firmware_pref.preferred_efi.to_wire() if firmware_pref.preferred_efi is not None else None
        if efi is None and (firmware_pref.preferred_use_efi or firmware_pref.preferred_use_secure_boot):
            efi = {"secureBoot": bool(firmware_pref.preferred_use_secure_boot)}
        bootloader = (
            {"efi": efi} if efi is not None else {"bios": {}} if firmware_pref.preferred_use_bios else None
        )
        _prefer(
            domain.setdefault("firmware", {}), "bootloader", bootloader, "domain.firmware.bootloader", sources
        )
    features_pref = preference.features
    if features_pref is not None:
        features = domain.setdefault("features", {})
        for key, value in (
            ("acpi", features_pref.preferred_acpi),
            ("apic", features_pref.preferred_apic),
            ("smm", features_pref.preferred_smm),
            ("pvspinlock", features_pref.preferred_pvspinlock),
        ):
            _prefer(
                features,
                key,
                value.to_wire() if value is not None else None,
                f"domain.features.{key}",
                sources,
            )
    _prefer(
        spec,
        "terminationGracePeriodSeconds",
        preference.preferred_termination_grace_period_seconds,
        "terminationGracePeriodSeconds",
        sources,
    )
    for empty in ("machine", "firmware", "features"):
        if domain.get(empty) == {}:
            del domain[empty]


def _requirement_causes(instancetype: InstancetypeSpec, preference: PreferenceSpec) -> list[FieldCause]:
    requirements = preference.requirements
    if requirements is None:
        return []
    causes: list[FieldCause] = []
    need_cpu = (requirements.cpu or {}).get("guest")
    if need_cpu is not None and instancetype.cpu.guest < need_cpu:
        message = CPU_REQUIREMENT.format(have=instancetype.cpu.guest, need=need_cpu)
        causes.append(FieldCause("spec.instancetype", message))
    need_memory: Quantity | None = (requirements.memory or {}).get("guest")
    if need_memory is not None and instancetype.memory.guest < need_memory:
        message = MEMORY_REQUIREMENT.format(have=instancetype.memory.guest, need=need_memory)
        causes.append(FieldCause("spec.instancetype", message))
    return causes


def expand(
    template: VirtualMachineInstanceSpec,
    instancetype: InstancetypeSpec | None,
    preference: PreferenceSpec | None,
) -> Expansion:
    """``template`` with the instance type applied (refused on conflicts) and then the preference."""
    if instancetype is None and preference is None:
        return Expansion(template)
    spec = template.to_wire()
    sources: dict[str, Provenance] = {}
    if instancetype is not None:
        conflicts = _instancetype_conflicts(spec, instancetype)
        if conflicts:
            paths = [f"{TEMPLATE_SPEC}.{p}" for p in conflicts]
            causes = [FieldCause(p, conflict_message([p]), CauseType.FIELD_VALUE_INVALID) for p in paths]
            return Expansion(template, {}, causes)
        if preference is not None:
            requirement_causes = _requirement_causes(instancetype, preference)
            if requirement_causes:
                return Expansion(template, {}, requirement_causes)
        _apply_instancetype(spec, instancetype, preference, sources)
    if preference is not None:
        _apply_preferences(spec, preference, sources)
    return Expansion(VirtualMachineInstanceSpec.model_validate(spec), sources)
