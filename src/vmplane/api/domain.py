"""``spec.domain`` of a VMI: CPU, memory, resources, devices, firmware and machine type."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity

__all__ = [
    "CPU",
    "CDRomTarget",
    "Devices",
    "Disk",
    "DiskTarget",
    "DomainSpec",
    "Features",
    "Firmware",
    "Hugepages",
    "Interface",
    "KernelBoot",
    "KernelBootContainer",
    "LunTarget",
    "Machine",
    "Memory",
    "ResourceRequirements",
]

DiskBus = Literal["virtio", "sata", "scsi", "usb"]
UINT32_MAX = (1 << 32) - 1
#: KubeVirt's ``uint32`` topology fields: a JSON integer (never ``true`` or ``"2"``) in 0..2^32-1.
UInt32 = Annotated[int, Field(strict=True, ge=0, le=UINT32_MAX)]


class Realtime(WireModel):
    """Real-time vCPU tuning (``cpu.realtime``)."""

    mask: str | None = None


class GuestMappingPassthrough(WireModel):
    """Marker: map the host NUMA topology into the guest."""


class NUMA(WireModel):
    """``cpu.numa``."""

    guest_mapping_passthrough: GuestMappingPassthrough | None = None


class CPUFeature(WireModel):
    """A CPU flag to require or forbid."""

    name: str
    policy: str | None = None


class CPU(WireModel):
    """Guest CPU topology and model; ``maxSockets`` is the hotplug ceiling."""

    sockets: UInt32 | None = None
    cores: UInt32 | None = None
    threads: UInt32 | None = None
    max_sockets: UInt32 | None = None
    model: str | None = None
    features: list[CPUFeature] | None = None
    dedicated_cpu_placement: bool | None = None
    isolate_emulator_thread: bool | None = None
    realtime: Realtime | None = None
    numa: NUMA | None = None


class Hugepages(WireModel):
    """Back guest memory with hugepages of ``pageSize``."""

    page_size: str | None = None


class Memory(WireModel):
    """Guest-visible memory; ``maxGuest`` is the hotplug ceiling."""

    guest: Quantity | None = None
    max_guest: Quantity | None = None
    hugepages: Hugepages | None = None


class ResourceRequirements(WireModel):
    """Requests and limits for the VM's host resources."""

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None
    overcommit_guest_overhead: bool | None = None


class DiskTarget(WireModel):
    """A disk exposed as a block device."""

    bus: DiskBus | None = None
    readonly: bool | None = None
    pci_address: str | None = None


class CDRomTarget(WireModel):
    """A disk exposed as a CD-ROM drive."""

    bus: DiskBus | None = None
    readonly: bool | None = None
    tray: Literal["open", "closed"] | None = None


class LunTarget(WireModel):
    """A disk exposed as a SCSI LUN."""

    bus: DiskBus | None = None
    readonly: bool | None = None
    reservation: bool | None = None


class Disk(WireModel):
    """``devices.disks[]``: how a volume of the same name appears to the guest."""

    name: str
    disk: DiskTarget | None = None
    cdrom: CDRomTarget | None = None
    lun: LunTarget | None = None
    boot_order: int | None = Field(default=None, ge=1)
    serial: str | None = None
    cache: Literal["none", "writethrough", "writeback"] | None = None
    io: Literal["native", "threads"] | None = None
    shareable: bool | None = None
    dedicated_io_thread: bool | None = Field(default=None, alias="dedicatedIOThread")
    error_policy: Literal["stop", "ignore", "report", "enospace"] | None = None


class InterfaceBindingMethod(WireModel):
    """Marker object for a core binding (``masquerade: {}``, ``bridge: {}``, ...)."""


class PluginBinding(WireModel):
    """A network binding plugin selected by name."""

    name: str


class Port(WireModel):
    """A port forwarded to a masquerade interface."""

    port: int
    name: str | None = None
    protocol: Literal["TCP", "UDP"] | None = None


class Interface(WireModel):
    """``devices.interfaces[]``: a guest NIC attached to the network of the same name."""

    name: str
    masquerade: InterfaceBindingMethod | None = None
    bridge: InterfaceBindingMethod | None = None
    sriov: InterfaceBindingMethod | None = None
    passt: InterfaceBindingMethod | None = None
    binding: PluginBinding | None = None
    model: str | None = None
    mac_address: str | None = None
    state: Literal["up", "down", "absent"] | None = None
    ports: list[Port] | None = None
    pci_address: str | None = None
    boot_order: int | None = Field(default=None, ge=1)

    @property
    def binding_name(self) -> str | None:
        """Which binding this interface uses (``masquerade``, ``bridge``, ``sriov``, plugin name)."""
        for core in ("masquerade", "bridge", "sriov", "passt"):
            if getattr(self, core) is not None:
                return core
        return self.binding.name if self.binding is not None else None


class Rng(WireModel):
    """A virtio random-number device."""


class Devices(WireModel):
    """``domain.devices``."""

    disks: list[Disk] | None = None
    interfaces: list[Interface] | None = None
    rng: Rng | None = None
    autoattach_pod_interface: bool | None = None
    autoattach_graphics_device: bool | None = None
    autoattach_serial_console: bool | None = None
    autoattach_mem_balloon: bool | None = None
    network_interface_multiqueue: bool | None = None
    block_multi_queue: bool | None = None


class KernelBootContainer(WireModel):
    """Where the kernel and initrd come from (an image resolved from the local image directory)."""

    image: str
    kernel_path: str | None = None
    initrd_path: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


class KernelBoot(WireModel):
    """Direct kernel boot."""

    kernel_args: str | None = None
    container: KernelBootContainer | None = None


class Bootloader(WireModel):
    """``firmware.bootloader`` (``bios: {}`` or ``efi: {}``)."""

    bios: dict[str, bool] | None = None
    efi: dict[str, bool] | None = None


class Firmware(WireModel):
    """``domain.firmware``."""

    uuid: str | None = None
    serial: str | None = None
    kernel_boot: KernelBoot | None = None
    bootloader: Bootloader | None = None


class Machine(WireModel):
    """``domain.machine``: the emulated machine type (``q35``)."""

    type: str | None = None


class FeatureState(WireModel):
    """An on/off hypervisor feature (``enabled`` defaults to true when the block is present)."""

    enabled: bool | None = None


class Features(WireModel):
    """``domain.features``."""

    acpi: FeatureState | None = None
    apic: FeatureState | None = None
    smm: FeatureState | None = None
    pvspinlock: FeatureState | None = None


class SEV(WireModel):
    """AMD SEV memory encryption."""


class LaunchSecurity(WireModel):
    """``domain.launchSecurity``."""

    sev: SEV | None = None


class DomainSpec(WireModel):
    """``spec.domain``: the virtual hardware."""

    cpu: CPU | None = None
    memory: Memory | None = None
    resources: ResourceRequirements | None = None
    devices: Devices = Field(default_factory=Devices)
    firmware: Firmware | None = None
    machine: Machine | None = None
    features: Features | None = None
    launch_security: LaunchSecurity | None = None
    io_threads_policy: Literal["shared", "auto"] | None = None
