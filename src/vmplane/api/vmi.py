"""``VirtualMachineInstance`` (``kubevirt.io/v1``): one running guest, its spec and what was observed."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from vmplane.api.domain import DomainSpec
from vmplane.api.meta import Condition, ObjectMeta
from vmplane.api.migration import VirtualMachineInstanceMigrationState
from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity
from vmplane.api.scheduling import Affinity, Toleration
from vmplane.api.volumes import Network, Volume

__all__ = [
    "CPUTopology",
    "HotplugFailure",
    "MemoryStatus",
    "VMIInterfaceStatus",
    "VMIPhase",
    "VirtualMachineInstance",
    "VirtualMachineInstanceSpec",
    "VirtualMachineInstanceStatus",
    "VolumeStatus",
]

EvictionStrategy = Literal["None", "LiveMigrate", "LiveMigrateIfPossible", "External"]


class VirtualMachineInstanceSpec(WireModel):
    """The guest's hardware, storage, networks and placement (also a VM's ``spec.template.spec``)."""

    domain: DomainSpec = Field(default_factory=DomainSpec)
    volumes: list[Volume] | None = None
    networks: list[Network] | None = None
    node_selector: dict[str, str] | None = None
    affinity: Affinity | None = None
    tolerations: list[Toleration] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    eviction_strategy: EvictionStrategy | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    architecture: str | None = None
    priority_class_name: str | None = None
    scheduler_name: str | None = None
    start_strategy: Literal["Paused"] | None = None


class VMIPhase(str, Enum):
    """``status.phase`` of a VMI."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class CPUTopology(WireModel):
    """The vCPU topology the hypervisor reports."""

    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None


class MemoryStatus(WireModel):
    """Guest memory: at boot, requested now, and what the guest currently has."""

    guest_at_boot: Quantity | None = None
    guest_current: Quantity | None = None
    guest_requested: Quantity | None = None


class VolumeStatus(WireModel):
    """One attached (or attaching) volume, as observed."""

    name: str
    target: str | None = None
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    size: int | None = None
    hotplug_volume: dict[str, str] | None = None


class VMIInterfaceStatus(WireModel):
    """One guest interface, as observed."""

    name: str | None = None
    mac: str | None = None
    ip_address: str | None = None
    ip_addresses: list[str] | None = None
    interface_name: str | None = None
    link_state: Literal["up", "down"] | None = None
    info_source: str | None = None
    queue_count: int | None = None


class HotplugFailure(WireModel):
    """A live change the hypervisor refused (vmplane's own record; upstream has only conditions)."""

    path: str = Field(description="The VMI spec path of the change, e.g. domain.cpu.sockets.")
    message: str = Field(default="", description="What the hypervisor said.")


class VirtualMachineInstanceStatus(WireModel):
    """What the node agent observed from the hypervisor."""

    phase: VMIPhase | None = None
    reason: str | None = None
    conditions: list[Condition] | None = None
    node_name: str | None = None
    current_cpu_topology: CPUTopology | None = Field(default=None, alias="currentCPUTopology")
    memory: MemoryStatus | None = None
    volume_status: list[VolumeStatus] | None = None
    interfaces: list[VMIInterfaceStatus] | None = None
    virtual_machine_revision_name: str | None = None
    phase_transition_timestamps: list[dict[str, str]] | None = None
    hotplug_failures: list[HotplugFailure] | None = Field(
        default=None,
        description="vmplane: every live change the hypervisor refused, by VMI spec path, until the "
        "spec and the guest agree again. Written by the node agent; the HotVCPUChange, "
        "HotMemoryChange and HotInterfaceChange conditions and volumeStatus show the same.",
    )
    migration_state: VirtualMachineInstanceMigrationState | None = Field(
        default=None, description="Represents the status of a live migration"
    )
    migration_method: Literal["BlockMigration", "LiveMigration"] | None = Field(
        default=None,
        description="Represents the method using which the vmi can be migrated: live migration or "
        "block migration",
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions or () if c.type == type_), None)


class VirtualMachineInstance(WireModel):
    """A running guest."""

    api_version: Literal["kubevirt.io/v1"] = "kubevirt.io/v1"
    kind: Literal["VirtualMachineInstance"] = "VirtualMachineInstance"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: VirtualMachineInstanceSpec = Field(default_factory=VirtualMachineInstanceSpec)
    status: VirtualMachineInstanceStatus | None = None
