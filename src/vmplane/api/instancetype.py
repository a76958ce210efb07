"""``instancetype.kubevirt.io/v1beta1``: instance types (sizes) and preferences (defaults) for VMs.

Field names are upstream's. A field upstream defines that vmplane cannot honour (GPUs, host devices,
hugepages, dedicated CPUs, Hyper-V enlightenments, a TPM, clocks...) is modelled as an opaque value so
that admission can refuse it by name (``unsupported_causes``) rather than as an unknown field: the
manifest is valid KubeVirt, vmplane just cannot run it. Those fields keep their upstream JSON type.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from vmplane.api import names
from vmplane.api.domain import DiskBus, FeatureState
from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.meta import ObjectMeta
from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity
from vmplane.api.spec_rules import HOST_CPU_MODELS, Q35_MACHINE

__all__ = [
    "CLUSTER_INSTANCETYPE",
    "CLUSTER_PREFERENCE",
    "INSTANCETYPE",
    "INSTANCETYPE_GROUP",
    "INSTANCETYPE_KINDS",
    "INSTANCETYPE_VERSION",
    "PREFERENCE",
    "PREFERENCE_KINDS",
    "CPUInstancetype",
    "InstancetypeSpec",
    "MemoryInstancetype",
    "PreferenceSpec",
    "VirtualMachineInstancetype",
    "VirtualMachinePreference",
    "unsupported_causes",
]

INSTANCETYPE_GROUP = "instancetype.kubevirt.io"
INSTANCETYPE_VERSION = "v1beta1"
INSTANCETYPE = "VirtualMachineInstancetype"
CLUSTER_INSTANCETYPE = "VirtualMachineClusterInstancetype"
PREFERENCE = "VirtualMachinePreference"
CLUSTER_PREFERENCE = "VirtualMachineClusterPreference"
INSTANCETYPE_KINDS = (INSTANCETYPE, CLUSTER_INSTANCETYPE)
PREFERENCE_KINDS = (PREFERENCE, CLUSTER_PREFERENCE)

#: What a refused upstream field's cause says.
NOT_HONOURED = "Unsupported value: vmplane cannot honour this field"


class _Unhonoured:
    """Marks an upstream field that admission refuses (``unsupported_causes``)."""


UNHONOURED = _Unhonoured()
_REFUSED = Field(description="Upstream's field; vmplane cannot honour it and refuses objects that set it.")
UnhonouredObject = Annotated[dict[str, Any] | None, UNHONOURED, _REFUSED]
UnhonouredList = Annotated[list[dict[str, Any]] | None, UNHONOURED, _REFUSED]
UnhonouredBool = Annotated[bool | None, UNHONOURED, _REFUSED]
UnhonouredInt = Annotated[int | None, UNHONOURED, _REFUSED]
UnhonouredStr = Annotated[str | None, UNHONOURED, _REFUSED]


class CPUInstancetype(WireModel):
    """``spec.cpu`` of an instance type: ``guest`` vCPUs, laid out by the preference's topology."""

    guest: int = Field(strict=True, ge=1, le=(1 << 32) - 1)
    model: str | None = None
    max_sockets: int | None = Field(default=None, strict=True, ge=1, le=(1 << 32) - 1)
    dedicated_cpu_placement: UnhonouredBool = None
    isolate_emulator_thread: UnhonouredBool = None
    numa: UnhonouredObject = None
    realtime: UnhonouredObject = None


class MemoryInstancetype(WireModel):
    """``spec.memory`` of an instance type."""

    guest: Quantity
    max_guest: Quantity | None = None
    hugepages: UnhonouredObject = None
    overcommit_percent: UnhonouredInt = None


class InstancetypeSpec(WireModel):
    """``spec`` of a (cluster) instance type: what the VM gets; a VM may not set any of it itself."""

    cpu: CPUInstancetype
    memory: MemoryInstancetype
    node_selector: dict[str, str] | None = None
    annotations: UnhonouredObject = None
    io_threads_policy: Literal["shared", "auto"] | None = Field(default=None, alias="ioThreadsPolicy")
    scheduler_name: UnhonouredStr = None
    gpus: UnhonouredList = None
    host_devices: UnhonouredList = None
    launch_security: UnhonouredObject = None
    io_threads: UnhonouredObject = Field(default=None, alias="ioThreads")


class VirtualMachineInstancetype(WireModel):
    """A ``VirtualMachineInstancetype`` or ``VirtualMachineClusterInstancetype`` (same shape)."""

    api_version: Literal["instancetype.kubevirt.io/v1beta1"] = "instancetype.kubevirt.io/v1beta1"
    kind: Literal["VirtualMachineInstancetype", "VirtualMachineClusterInstancetype"] = (
        "VirtualMachineInstancetype"
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InstancetypeSpec


CPUTopology = Literal[
    "sockets",
    "cores",
    "threads",
    "any",
    "spread",
    "preferSockets",
    "preferCores",
    "preferThreads",
    "preferAny",
    "preferSpread",
]


class CPUPreferences(WireModel):
    """``spec.cpu`` of a preference."""

    preferred_cpu_topology: CPUTopology | None = Field(default=None, alias="preferredCPUTopology")
    spread_options: UnhonouredObject = None
    preferred_cpu_features: UnhonouredList = Field(default=None, alias="preferredCPUFeatures")


class DevicePreferences(WireModel):
    """``spec.devices`` of a preference: defaults for what the VM's devices leave unset."""

    preferred_disk_bus: DiskBus | None = None
    preferred_cdrom_bus: DiskBus | None = None
    preferred_lun_bus: DiskBus | None = None
    preferred_interface_model: str | None = None
    preferred_autoattach_graphics_device: bool | None = None
    preferred_autoattach_mem_balloon: bool | None = None
    preferred_autoattach_pod_interface: bool | None = None
    preferred_autoattach_serial_console: bool | None = None
    preferred_network_interface_multi_queue: bool | None = None
    preferred_block_multi_queue: bool | None = None
    preferred_rng: dict[str, Any] | None = None
    preferred_tpm: UnhonouredObject = Field(default=None, alias="preferredTPM")
    preferred_sound_model: UnhonouredStr = None
    preferred_input_bus: UnhonouredStr = None
    preferred_input_type: UnhonouredStr = None
    preferred_disk_block_size: UnhonouredObject = None
    preferred_disk_cache: UnhonouredStr = None
    preferred_disk_io: UnhonouredStr = Field(default=None, alias="preferredDiskIO")
    preferred_disk_dedicated_io_thread: UnhonouredBool = Field(
        default=None, alias="preferredDiskDedicatedIoThread"
    )
    preferred_interface_masquerade: UnhonouredObject = None
    preferred_use_virtio_transitional: UnhonouredBool = None
    preferred_virtual_gpu_options: UnhonouredObject = Field(default=None, alias="preferredVirtualGPUOptions")


class MachinePreferences(WireModel):
    """``spec.machine`` of a preference."""

    preferred_machine_type: str | None = None


class EFIPreference(WireModel):
    """``firmware.preferredEfi``."""

    secure_boot: bool | None = None
    persistent: bool | None = None


class FirmwarePreferences(WireModel):
    """``spec.firmware`` of a preference."""

    preferred_use_bios: bool | None = None
    preferred_use_efi: bool | None = None
    preferred_use_secure_boot: bool | None = None
    preferred_efi: EFIPreference | None = None
    preferred_use_bios_serial: UnhonouredBool = None


class FeaturePreferences(WireModel):
    """``spec.features`` of a preference."""

    preferred_acpi: FeatureState | None = None
    preferred_apic: FeatureState | None = None
    preferred_smm: FeatureState | None = None
    preferred_hyperv: UnhonouredObject = None
    preferred_kvm: UnhonouredObject = None
    preferred_pvspinlock: FeatureState | None = None


class PreferenceRequirements(WireModel):
    """``spec.requirements``: the least CPU and memory a VM using the preference must have."""

    cpu: dict[str, int] | None = None
    memory: dict[str, Quantity] | None = None


class PreferenceSpec(WireModel):
    """``spec`` of a (cluster) preference: defaults a VM's own values override."""

    cpu: CPUPreferences | None = None
    devices: DevicePreferences | None = None
    machine: MachinePreferences | None = None
    firmware: FirmwarePreferences | None = None
    features: FeaturePreferences | None = None
    requirements: PreferenceRequirements | None = None
    preferred_termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    annotations: UnhonouredObject = None
    clock: UnhonouredObject = None
    preferred_subdomain: UnhonouredStr = None
    prefer_spread_socket_to_core_ratio: UnhonouredInt = None
    volumes: UnhonouredObject = None
    preferred_architecture: UnhonouredStr = None


class VirtualMachinePreference(WireModel):
    """A ``VirtualMachinePreference`` or ``VirtualMachineClusterPreference`` (same shape)."""

    api_version: Literal["instancetype.kubevirt.io/v1beta1"] = "instancetype.kubevirt.io/v1beta1"
    kind: Literal["VirtualMachinePreference", "VirtualMachineClusterPreference"] = "VirtualMachinePreference"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PreferenceSpec


def _opaque_fields(model: WireModel, prefix: str) -> list[FieldCause]:
    """A cause for every set field marked ``UNHONOURED``, recursing into sub-models."""
    causes: list[FieldCause] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        alias = info.alias or name
        if isinstance(value, WireModel):
            causes.extend(_opaque_fields(value, f"{prefix}.{alias}"))
        elif UNHONOURED in info.metadata:
            causes.append(FieldCause(f"{prefix}.{alias}", NOT_HONOURED, CauseType.FIELD_VALUE_NOT_SUPPORTED))
    return causes


def _shape_causes(spec: InstancetypeSpec | PreferenceSpec) -> list[FieldCause]:
    """Values that reach QEMU options (``-cpu``, ``-machine``) must have their shape."""
    causes: list[FieldCause] = []
    model = spec.cpu.model if isinstance(spec, InstancetypeSpec) else None
    if model and model not in HOST_CPU_MODELS and not names.CPU_MODEL.fullmatch(model):
        message = f"Invalid value: {model!r}: a CPU model name consists of letters, digits, '.', '_' and '-'"
        causes.append(FieldCause("spec.cpu.model", message))
    machine = (
        spec.machine.preferred_machine_type if isinstance(spec, PreferenceSpec) and spec.machine else None
    )
    if machine is not None and not Q35_MACHINE.fullmatch(machine):
        message = f"Unsupported value: {machine!r}: a q35 machine type (q35, pc-q35-<version>)"
        causes.append(
            FieldCause("spec.machine.preferredMachineType", message, CauseType.FIELD_VALUE_NOT_SUPPORTED)
        )
    return causes


def unsupported_causes(spec: InstancetypeSpec | PreferenceSpec) -> list[FieldCause]:
    """One cause per upstream field set that vmplane cannot honour, and per value QEMU could not take."""
    causes = _opaque_fields(spec, "spec") + _shape_causes(spec)
    cpu = spec.cpu if isinstance(spec, PreferenceSpec) else None
    if cpu is not None and cpu.preferred_cpu_topology in ("spread", "preferSpread"):
        causes.append(
            FieldCause(
                "spec.cpu.preferredCPUTopology",
                "Unsupported value: vmplane cannot honour the spread topology",
                CauseType.FIELD_VALUE_NOT_SUPPORTED,
            )
        )
    return causes
