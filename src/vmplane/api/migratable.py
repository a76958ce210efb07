"""Whether a VMI can be live-migrated: the ``LiveMigratable`` condition with upstream's reasons, and the
eviction strategy in force. Pure.

Upstream's virt-handler (``calculateLiveMigrationCondition``) checks the pod network's binding first,
then the volumes. vmplane has no pods, so "shared" is what the node offers: claims are shared when
the nodes keep them on a common volume directory, a hostDisk when it says ``shared: true``. Disks
that live on one node only (containerDisk overlays, emptyDisks, cloud-init seeds) need a block copy
during the migration; a node that cannot copy them makes such VMIs not migratable, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.meta import Condition
from vmplane.api.vmi import EvictionStrategy, VirtualMachineInstance, VirtualMachineInstanceSpec
from vmplane.api.volumes import Volume

__all__ = [
    "ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION",
    "DISKS_NOT_LIVE_MIGRATABLE",
    "INTERFACE_NOT_LIVE_MIGRATABLE",
    "LIVE_MIGRATABLE",
    "Migratability",
    "MigrationSupport",
    "eviction_strategy",
    "live_migratable",
    "migratability",
    "migrates_on_eviction",
]

LIVE_MIGRATABLE = "LiveMigratable"
DISKS_NOT_LIVE_MIGRATABLE = "DisksNotLiveMigratable"
INTERFACE_NOT_LIVE_MIGRATABLE = "InterfaceNotLiveMigratable"
ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION = "kubevirt.io/allow-pod-bridge-network-live-migration"
_POD_BINDING_MESSAGE = (
    "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
)


@dataclass(frozen=True, slots=True)
class MigrationSupport:
    """What the node can do for a migration.

    ``copies_local_disks``: its hypervisor copies node-local disks to the target while migrating.
    ``shared_claims``: claims live on a volume directory every node shares.
    """

    copies_local_disks: bool = False
    shared_claims: bool = False


@dataclass(frozen=True, slots=True)
class Migratability:
    """The ``LiveMigratable`` condition and ``status.migrationMethod``."""

    condition: Condition
    method: Literal["BlockMigration", "LiveMigration"]


def _local_kind(volume: Volume) -> str | None:
    """The source kind of a volume that lives on its node only, None for any other."""
    for kind, present in (
        ("containerDisk", volume.container_disk),
        ("emptyDisk", volume.empty_disk),
        ("cloudInitNoCloud", volume.cloud_init_no_cloud),
    ):
        if present is not None:
            return kind
    return None


def _disk_blocker(spec: VirtualMachineInstanceSpec, support: MigrationSupport) -> str | None:
    """Upstream's ``checkVolumesForMigration`` message for the first volume that cannot move."""
    for volume in spec.volumes or ():
        claim = volume.persistent_volume_claim.claim_name if volume.persistent_volume_claim else None
        claim = claim or (volume.data_volume.name if volume.data_volume else None)
        if claim is not None and not support.shared_claims:
            return (
                f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs "
                "must be shared (using ReadWriteMany access mode)"
            )
        if volume.host_disk is not None and not volume.host_disk.shared:
            return "cannot migrate VMI with non-shared HostDisk"
        kind = _local_kind(volume)
        if kind is not None and not support.copies_local_disks:
            return (
                f"cannot migrate VMI: volume {volume.name} ({kind}) is local to its node and this node "
                "cannot copy it to the target during a migration"
            )
    return None


def _interface_blocker(spec: VirtualMachineInstanceSpec, annotations: dict[str, str]) -> str | None:
    """Upstream's check of the pod network's binding (masquerade and passt move; bridge only if allowed)."""
    pod = next((n for n in spec.networks or () if n.pod is not None), None)
    if pod is None:
        return None
    interfaces = spec.domain.devices.interfaces if spec.domain.devices is not None else None
    if not interfaces:
        return None
    primary = next((i for i in interfaces if i.name == pod.name), None)
    if primary is None:
        return f"no primary interface found for network {pod.name}"
    if primary.masquerade is not None or primary.passt is not None:
        return None
    if primary.bridge is not None and ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION in annotations:
        return None
    return _POD_BINDING_MESSAGE


def _has_local_disks(spec: VirtualMachineInstanceSpec) -> bool:
    return any(
        _local_kind(v) is not None or (v.host_disk is not None and not v.host_disk.shared)
        for v in spec.volumes or ()
    )


def migratability(
    spec: VirtualMachineInstanceSpec, annotations: dict[str, str], support: MigrationSupport
) -> Migratability:
    """Whether the VMI of ``spec`` (with its ``annotations``) can move from a node with ``support``."""
    method: Literal["BlockMigration", "LiveMigration"] = (
        "BlockMigration" if _has_local_disks(spec) else "LiveMigration"
    )
    interface = _interface_blocker(spec, annotations)
    if interface is not None:
        reason, message = INTERFACE_NOT_LIVE_MIGRATABLE, interface
    else:
        disks = _disk_blocker(spec, support)
        if disks is None:
            return Migratability(Condition(type=LIVE_MIGRATABLE, status="True"), method)
        reason, message = DISKS_NOT_LIVE_MIGRATABLE, disks
    return Migratability(
        Condition(type=LIVE_MIGRATABLE, status="False", reason=reason, message=message), method
    )


def eviction_strategy(spec: VirtualMachineInstanceSpec, config: KubeVirtConfiguration) -> EvictionStrategy:
    """The eviction strategy in force: the VMI's, else the cluster's, else ``None`` (upstream's order)."""
    return spec.eviction_strategy or config.eviction_strategy or "None"


def live_migratable(vmi: VirtualMachineInstance) -> bool:
    """Whether the VMI's ``LiveMigratable`` condition is True (its node agent computes it)."""
    condition = vmi.status.condition(LIVE_MIGRATABLE) if vmi.status is not None else None
    return condition is not None and condition.status == "True"


def migrates_on_eviction(vmi: VirtualMachineInstance, config: KubeVirtConfiguration) -> bool:
    """Whether the VMI's eviction strategy moves it off a drained node rather than stopping it
    (upstream's ``VMIMigratableOnEviction``): ``LiveMigrate`` always, ``LiveMigrateIfPossible``
    while it is migratable."""
    strategy = eviction_strategy(vmi.spec, config)
    if strategy == "LiveMigrate":
        return True
    return strategy == "LiveMigrateIfPossible" and live_migratable(vmi)
