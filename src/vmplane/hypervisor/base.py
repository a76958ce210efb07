"""The Hypervisor protocol: what the node agent needs from a machine driver.

The agent translates a VMI spec into a ``MachineSpec`` (plain values, no API types) so that drivers
stay ignorant of Kubernetes objects. Every method acts on the real machine and returns when the
hypervisor acknowledged the request; what the machine *is* comes only from ``observe``. Drivers call
the ``on_change`` callback they are given whenever a machine's observed state may have changed (a
process exit, a completed unplug, a crash), so the agent can re-read it: the loop stays
level-triggered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol

from vmplane.hypervisor.guest_info import GuestInterface
from vmplane.hypervisor.migration import MigrationEndpoint, MigrationProgress, MigrationSettings

__all__ = [
    "DiskSpec",
    "HotplugError",
    "Hypervisor",
    "HypervisorError",
    "KernelBoot",
    "MachineNotFoundError",
    "MachineSpec",
    "MachineState",
    "NicSpec",
    "ObservedDisk",
    "ObservedMachine",
    "ObservedNic",
    "OnChange",
    "UnplugTimeoutError",
]

OnChange = Callable[[str], None]


class HypervisorError(Exception):
    """Base of every error a Hypervisor raises."""


class MachineNotFoundError(HypervisorError):
    """No machine of that name is known (never started, or gone)."""


class HotplugError(HypervisorError):
    """The hypervisor refused a hotplug or unplug request."""


class UnplugTimeoutError(HotplugError):
    """An unplug was requested but the guest never acknowledged it before the deadline."""


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """A block device: ``path`` is an image on the host (created by the agent beforehand); a CD-ROM
    drive with no ``path`` is empty (its tray holds no medium, as a disk with no volume boots)."""

    name: str
    path: str
    format: Literal["qcow2", "raw"] = "qcow2"
    bus: Literal["virtio", "sata", "scsi"] = "virtio"
    cdrom: bool = False
    readonly: bool = False
    serial: str | None = None
    hotpluggable: bool = False

    @property
    def empty(self) -> bool:
        """A CD-ROM drive with no medium."""
        return self.cdrom and not self.path


@dataclass(frozen=True, slots=True)
class NicSpec:
    """A network interface; ``link_up`` False boots it with the link down."""

    name: str
    mac: str
    model: str = "virtio"
    link_up: bool = True


@dataclass(frozen=True, slots=True)
class KernelBoot:
    """Direct kernel boot (``-kernel``/``-initrd``/``-append``)."""

    kernel: str
    initrd: str | None = None
    cmdline: str = ""


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything needed to boot one guest, with the hotplug headroom it must have at boot."""

    name: str
    uuid: str
    sockets: int
    cores: int = 1
    threads: int = 1
    max_sockets: int = 0
    memory_bytes: int = 128 * 1024 * 1024
    max_memory_bytes: int | None = None
    machine: str = "q35"
    cpu_model: str | None = None
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    kernel_boot: KernelBoot | None = None
    spare_root_ports: int = 8


class MachineState(str, Enum):
    """Where a machine is in its life, as the hypervisor sees it."""

    STARTING = "Starting"
    RUNNING = "Running"
    STOPPED = "Stopped"
    CRASHED = "Crashed"
    #: A migration target: booted with the running spec, its vCPUs waiting for the incoming state.
    INCOMING = "Incoming"
    #: A migration source whose guest now runs on the target: stopped for good, to be forgotten.
    MIGRATED = "Migrated"


@dataclass(frozen=True, slots=True)
class ObservedDisk:
    """A block device the hypervisor reports attached."""

    name: str
    path: str
    cdrom: bool = False


@dataclass(frozen=True, slots=True)
class ObservedNic:
    """A network interface the hypervisor reports attached."""

    name: str
    mac: str
    link_up: bool


@dataclass(frozen=True, slots=True)
class ObservedMachine:
    """What the hypervisor reports, never what was asked for."""

    name: str
    state: MachineState
    sockets: int = 0
    cores: int = 1
    threads: int = 1
    vcpus: int = 0
    memory_bytes: int = 0
    disks: tuple[ObservedDisk, ...] = ()
    nics: tuple[ObservedNic, ...] = ()
    reason: str = ""
    pending_unplugs: tuple[str, ...] = field(default=())
    #: The vCPUs are stopped on request (QMP ``stop``); the machine is still Running, as upstream's VMI.
    paused: bool = False
    #: The guest agent answers on its channel, and the interfaces it reports.
    agent_connected: bool = False
    guest_interfaces: tuple[GuestInterface, ...] = ()


class Hypervisor(Protocol):
    """A driver that runs machines: ``QemuHypervisor`` for real guests, ``SimulatedHypervisor`` in tests."""

    async def start(self, spec: MachineSpec) -> None:
        """Boot a machine; returns once the hypervisor accepted it (state Starting or Running)."""
        ...

    async def stop(self, name: str, *, grace_period: float) -> None:
        """Power the guest down (ACPI), killing it after ``grace_period`` seconds; idempotent."""
        ...

    async def set_sockets(self, name: str, sockets: int) -> None:
        """Hotplug vCPUs until ``sockets`` sockets are present (increase only)."""
        ...

    async def set_memory(self, name: str, memory_bytes: int) -> None:
        """Grow (or shrink, not below boot size) guest memory to ``memory_bytes``."""
        ...

    async def attach_disk(self, name: str, disk: DiskSpec) -> None:
        """Hotplug a block device."""
        ...

    async def change_medium(self, name: str, disk: DiskSpec) -> None:
        """Put ``disk``'s medium into its plugged CD-ROM drive (``disk.empty``: eject, leaving it empty)."""
        ...

    async def detach_disk(self, name: str, disk_name: str, *, timeout: float) -> None:
        """Unplug a block device and wait for the guest to release it (UnplugTimeoutError if not)."""
        ...

    async def attach_nic(self, name: str, nic: NicSpec) -> None:
        """Hotplug a network interface."""
        ...

    async def detach_nic(self, name: str, nic_name: str, *, timeout: float) -> None:
        """Unplug a network interface and wait for the guest to release it."""
        ...

    async def set_link(self, name: str, nic_name: str, *, up: bool) -> None:
        """Set an interface's link state."""
        ...

    async def pause(self, name: str) -> None:
        """Stop the guest's vCPUs (QMP ``stop``); idempotent."""
        ...

    async def resume(self, name: str) -> None:
        """Let a paused guest's vCPUs run again (QMP ``cont``); idempotent."""
        ...

    async def reset(self, name: str) -> None:
        """Hard-reset the guest, as a reset button would (QMP ``system_reset``): same machine, new boot."""
        ...

    async def soft_reboot(self, name: str) -> None:
        """Ask the guest to reboot itself: Ctrl-Alt-Delete on its keyboard (see ``agent.lifecycle``)."""
        ...

    async def migration_layout(self, name: str) -> str:
        """The running machine's device layout (what was booted and hot-plugged, where), for the target."""
        ...

    async def prepare_incoming(
        self, spec: MachineSpec, layout: str, *, listen_host: str, copied_disks: tuple[str, ...]
    ) -> MigrationEndpoint:
        """Boot a migration target (state Incoming) from ``spec`` and the source's ``layout``,
        listening on ``listen_host``; the disks named in ``copied_disks`` (created empty, of their
        size, by the agent) are exported for the source to copy into. Returns where it listens."""
        ...

    async def migrate(
        self,
        name: str,
        target: MigrationEndpoint,
        *,
        copied_disks: tuple[str, ...],
        settings: MigrationSettings,
    ) -> None:
        """Start moving a running machine to ``target`` (copying ``copied_disks`` first); returns once
        started. Its end is reported through ``on_change`` and ``migration_progress``: completed
        (this machine is then Migrated), or failed or cancelled (it runs on here as before)."""
        ...

    async def migration_progress(self, name: str) -> MigrationProgress:
        """The source's migration as it stands (status ``none`` when none was started)."""
        ...

    async def cancel_migration(self, name: str) -> None:
        """Abort the source's migration in flight; the guest keeps running here. Idempotent."""
        ...

    async def observe(self, name: str) -> ObservedMachine:
        """The machine as the hypervisor sees it now; MachineNotFoundError if unknown."""
        ...

    async def adopt(self) -> list[str]:
        """Reconnect to machines left running by an earlier process; returns their names."""
        ...

    async def forget(self, name: str) -> None:
        """Drop a stopped or crashed machine's records and files."""
        ...

    async def close(self) -> None:
        """Disconnect from every machine without stopping any of them."""
        ...
