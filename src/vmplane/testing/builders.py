"""Builders for tests: a VM template, a cluster configuration and a booted VMI in one line each.

Every builder is keyword-only and returns the same frozen wire types production code uses, so a test
reads like the spec it checks: ``vm_spec(sockets=2, guest="2Gi")``, ``config(strategy="LiveUpdate")``,
``boot(template, cfg)``. Never imported by production code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.domain import (
    CPU,
    NUMA,
    SEV,
    CDRomTarget,
    Devices,
    Disk,
    DiskTarget,
    DomainSpec,
    Firmware,
    GuestMappingPassthrough,
    Hugepages,
    Interface,
    InterfaceBindingMethod,
    LaunchSecurity,
    Machine,
    Memory,
    Realtime,
    ResourceRequirements,
)
from vmplane.api.guest_resources import Resources
from vmplane.api.kubevirt import KubeVirtConfiguration, LiveUpdateConfiguration, RolloutStrategy
from vmplane.api.meta import Condition
from vmplane.api.quantity import Quantity
from vmplane.api.scheduling import Affinity, Toleration
from vmplane.api.vmi import (
    EvictionStrategy,
    VirtualMachineInstanceSpec,
    VirtualMachineInstanceStatus,
    VMIPhase,
    VolumeStatus,
)
from vmplane.api.volumes import (
    ContainerDisk,
    DataVolumeSource,
    MultusNetwork,
    Network,
    PersistentVolumeClaimSource,
    PodNetwork,
    Volume,
)
from vmplane.rollout.effective import EffectiveSpec, effective_spec
from vmplane.rollout.plan import Plan, plan

__all__ = [
    "RunningVMI",
    "boot",
    "condition",
    "config",
    "container_disk",
    "disk",
    "interface",
    "network",
    "pvc",
    "replan",
    "running_vmi",
    "toleration",
    "vm_spec",
    "volume_status",
]

Binding = Literal["masquerade", "bridge", "sriov", "passt"]
Strategy = RolloutStrategy | Literal["Stage", "LiveUpdate"] | None


def _passthrough() -> NUMA:
    return NUMA(guest_mapping_passthrough=GuestMappingPassthrough())


def _quantity(value: str | Quantity | None) -> Quantity | None:
    return Quantity.parse(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------- devices


def disk(name: str, *, cdrom: bool = False, bus: Literal["virtio", "sata", "scsi"] | None = None) -> Disk:
    """A disk (``disk: {bus}``) or a CD-ROM drive (``cdrom: {bus}``, sata unless given)."""
    if cdrom:
        return Disk(name=name, cdrom=CDRomTarget(bus=bus or "sata"))
    return Disk(name=name, disk=DiskTarget(bus=bus or "virtio"))


def container_disk(name: str, *, image: str = "quay.io/containerdisks/fedora:latest") -> Volume:
    """A containerDisk volume (never hotpluggable)."""
    return Volume(name=name, container_disk=ContainerDisk(image=image))


def pvc(
    name: str, *, claim: str | None = None, hotpluggable: bool | None = None, data_volume: bool = False
) -> Volume:
    """A PVC volume (a DataVolume with ``data_volume=True``) of ``claim`` (default ``<name>-pvc``)."""
    claim_name = claim or f"{name}-pvc"
    if data_volume:
        return Volume(name=name, data_volume=DataVolumeSource(name=claim_name, hotpluggable=hotpluggable))
    return Volume(
        name=name,
        persistent_volume_claim=PersistentVolumeClaimSource(claim_name=claim_name, hotpluggable=hotpluggable),
    )


def interface(
    name: str,
    *,
    binding: Binding = "bridge",
    model: str | None = None,
    mac: str | None = None,
    state: Literal["up", "down", "absent"] | None = None,
) -> Interface:
    """A NIC with one core binding (bridge unless given)."""
    return Interface.model_validate(
        {
            "name": name,
            binding: InterfaceBindingMethod(),
            "model": model,
            "mac_address": mac,
            "state": state,
        }
    )


def network(name: str, *, nad: str | None = None) -> Network:
    """The pod network when ``nad`` is None, else a multus network of that NetworkAttachmentDefinition."""
    if nad is None:
        return Network(name=name, pod=PodNetwork())
    return Network(name=name, multus=MultusNetwork(network_name=nad))


def toleration(key: str, *, value: str | None = None) -> Toleration:
    """A NoSchedule toleration of ``key`` (``Equal`` with a value, else ``Exists``)."""
    operator: Literal["Exists", "Equal"] = "Equal" if value is not None else "Exists"
    return Toleration(key=key, operator=operator, value=value, effect="NoSchedule")


# ------------------------------------------------------------------------------------------------ specs


def vm_spec(
    *,
    sockets: int | None = 1,
    cores: int | None = 1,
    threads: int | None = 1,
    max_sockets: int | None = None,
    cpu_model: str | None = None,
    dedicated_cpu_placement: bool | None = None,
    realtime: bool = False,
    guest_mapping_passthrough: bool = False,
    guest: str | None = "1Gi",
    max_guest: str | None = None,
    hugepages: str | None = None,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    machine_type: str | None = None,
    launch_security: bool = False,
    firmware_uuid: str | None = None,
    disks: Sequence[Disk] = (),
    volumes: Sequence[Volume] = (),
    interfaces: Sequence[Interface] = (),
    networks: Sequence[Network] = (),
    node_selector: Mapping[str, str] | None = None,
    affinity: Affinity | None = None,
    tolerations: Sequence[Toleration] | None = None,
    hostname: str | None = None,
    eviction_strategy: EvictionStrategy | None = None,
    termination_grace_period_seconds: int | None = None,
    architecture: str | None = None,
) -> VirtualMachineInstanceSpec:
    """A VM template spec (``spec.template.spec``): 1 socket x 1 core x 1 thread and 1Gi unless told.

    ``sockets=cores=threads=None`` leaves ``domain.cpu`` out; ``guest=None`` leaves ``domain.memory`` out
    unless ``max_guest`` or ``hugepages`` is given. Empty device lists are left out.
    """
    topology = (sockets, cores, threads, max_sockets, cpu_model, dedicated_cpu_placement)
    cpu: CPU | None = None
    if any(v is not None for v in topology) or realtime or guest_mapping_passthrough:
        cpu = CPU(
            sockets=sockets,
            cores=cores,
            threads=threads,
            max_sockets=max_sockets,
            model=cpu_model,
            dedicated_cpu_placement=dedicated_cpu_placement,
            realtime=Realtime() if realtime else None,
            numa=_passthrough() if guest_mapping_passthrough else None,
        )
    memory: Memory | None = None
    if guest is not None or max_guest is not None or hugepages is not None:
        memory = Memory(
            guest=_quantity(guest),
            max_guest=_quantity(max_guest),
            hugepages=Hugepages(page_size=hugepages) if hugepages is not None else None,
        )
    resources: ResourceRequirements | None = None
    if requests is not None or limits is not None:
        resources = ResourceRequirements(
            requests={k: Quantity.parse(v) for k, v in requests.items()} if requests is not None else None,
            limits={k: Quantity.parse(v) for k, v in limits.items()} if limits is not None else None,
        )
    domain = DomainSpec(
        cpu=cpu,
        memory=memory,
        resources=resources,
        devices=Devices(disks=list(disks) or None, interfaces=list(interfaces) or None),
        firmware=Firmware(uuid=firmware_uuid) if firmware_uuid is not None else None,
        machine=Machine(type=machine_type) if machine_type is not None else None,
        launch_security=LaunchSecurity(sev=SEV()) if launch_security else None,
    )
    return VirtualMachineInstanceSpec(
        domain=domain,
        volumes=list(volumes) or None,
        networks=list(networks) or None,
        node_selector=dict(node_selector) if node_selector is not None else None,
        affinity=affinity,
        tolerations=list(tolerations) if tolerations is not None else None,
        hostname=hostname,
        eviction_strategy=eviction_strategy,
        termination_grace_period_seconds=termination_grace_period_seconds,
        architecture=architecture,
    )


def config(
    *,
    strategy: Strategy = None,
    max_cpu_sockets: int | None = None,
    max_guest: str | None = None,
    max_hotplug_ratio: int | None = None,
    cpu_model: str | None = None,
    machine_type: str | None = None,
    eviction_strategy: EvictionStrategy | None = None,
) -> KubeVirtConfiguration:
    """A KubeVirt ``spec.configuration``; ``strategy=None`` leaves ``vmRolloutStrategy`` out (Stage)."""
    ceilings = (max_cpu_sockets, max_guest, max_hotplug_ratio)
    live_update = None
    if any(v is not None for v in ceilings):
        live_update = LiveUpdateConfiguration(
            max_cpu_sockets=max_cpu_sockets,
            max_guest=_quantity(max_guest),
            max_hotplug_ratio=max_hotplug_ratio,
        )
    return KubeVirtConfiguration(
        vm_rollout_strategy=RolloutStrategy(strategy) if strategy is not None else None,
        live_update_configuration=live_update,
        cpu_model=cpu_model,
        machine_type=machine_type,
        eviction_strategy=eviction_strategy,
    )


# ---------------------------------------------------------------------------------------- running VMIs


def condition(
    type_: str, *, status: Literal["True", "False"], reason: str = "", message: str = ""
) -> Condition:
    """A VMI condition (``HotVCPUChange``, ``HotMemoryChange``, ...)."""
    return Condition(type=type_, status=status, reason=reason or None, message=message or None)


def volume_status(name: str, *, phase: str = "Ready", message: str | None = None) -> VolumeStatus:
    """One entry of ``status.volumeStatus``."""
    return VolumeStatus(name=name, phase=phase, message=message)


class RunningVMI(NamedTuple):
    """A VMI as the planner sees it: the running spec and the observed status."""

    spec: VirtualMachineInstanceSpec
    status: VirtualMachineInstanceStatus


def running_vmi(
    effective: EffectiveSpec | VirtualMachineInstanceSpec,
    *,
    conditions: Sequence[Condition] = (),
    volumes: Sequence[VolumeStatus] = (),
) -> RunningVMI:
    """Boot an effective spec: the VMI spec is the effective spec, the status is what defaulting sets.

    ``status.currentCPUTopology`` and ``status.memory`` come from ``api.defaults.initial_*`` (guestAtBoot
    = guestCurrent = guestRequested = the boot guest); ``conditions`` and ``volumes`` are added as given.
    """
    spec = effective.spec if isinstance(effective, EffectiveSpec) else effective
    status = VirtualMachineInstanceStatus(
        phase=VMIPhase.RUNNING,
        current_cpu_topology=initial_cpu_topology(spec),
        memory=initial_memory_status(spec),
        conditions=list(conditions) or None,
        volume_status=list(volumes) or None,
    )
    return RunningVMI(spec, status)


def boot(template: VirtualMachineInstanceSpec, cfg: KubeVirtConfiguration) -> RunningVMI:
    """Start a VMI from ``template`` under ``cfg``: its effective spec, booted."""
    return running_vmi(effective_spec(template, cfg))


def replan(
    vmi: RunningVMI,
    template: VirtualMachineInstanceSpec,
    cfg: KubeVirtConfiguration,
    *,
    status: VirtualMachineInstanceStatus | None = None,
    node_room: Resources | None = None,
) -> Plan:
    """Plan ``template`` (under ``cfg``) against a running VMI, observed as ``status`` if given, on a
    node with ``node_room`` for it (None: not limited)."""
    return plan(
        running=vmi.spec,
        desired=effective_spec(template, cfg),
        observed=vmi.status if status is None else status,
        config=cfg,
        node_room=node_room,
    )
