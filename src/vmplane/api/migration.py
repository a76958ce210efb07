"""``VirtualMachineInstanceMigration`` (``kubevirt.io/v1``, short name ``vmim``) and the migration state
a VMI carries while it moves (``status.migrationState``), with upstream's field names.

The migration object is the request (``spec.vmiName``, ``spec.addedNodeSelector``) and its progress
(``status.phase``); the VMI's ``status.migrationState`` is the seam between the migration controller
and the two node agents. ``MigrationConfiguration`` is ``spec.configuration.migrations`` of the
KubeVirt object; ``MigrationLimits`` the values in force (upstream's defaults where unset).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from pydantic import Field

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.meta import Condition, ObjectMeta
from vmplane.api.metadata_validation import label_value_errors, qualified_name_errors
from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity

__all__ = [
    "ACTIVE_PHASES",
    "MIGRATION_SELECTOR_LABEL",
    "PROGRESS_ANNOTATION",
    "MigrateOptions",
    "MigrationAbortStatus",
    "MigrationConfiguration",
    "MigrationLimits",
    "MigrationMode",
    "MigrationPhase",
    "VirtualMachineInstanceMigration",
    "VirtualMachineInstanceMigrationSpec",
    "VirtualMachineInstanceMigrationState",
    "VirtualMachineInstanceMigrationStatus",
    "added_node_selector_causes",
    "migration_spec_causes",
]

#: Upstream's mutating webhook labels every migration with the VMI it moves (``kubevirt.io/vmi-name``).
MIGRATION_SELECTOR_LABEL = "kubevirt.io/vmi-name"
#: On the VMI, how far the source's migration got (``vmplane migrate --wait`` draws it): bytes of guest memory
#: transferred, remaining and in all, the dirty rate, and the disks' bytes copied.
PROGRESS_ANNOTATION = "vmplane.io/migration-progress"


class MigrationPhase(str, Enum):
    """``status.phase`` of a migration, upstream's values in their order."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    PREPARING_TARGET = "PreparingTarget"
    TARGET_READY = "TargetReady"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


#: Phases of a migration still in flight (upstream's admitter refuses a second one for the VMI then).
ACTIVE_PHASES = frozenset(set(MigrationPhase) - {MigrationPhase.SUCCEEDED, MigrationPhase.FAILED})


class MigrationAbortStatus(str, Enum):
    """``migrationState.abortStatus``."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTING = "Aborting"


class MigrationMode(str, Enum):
    """``migrationState.mode``."""

    PRE_COPY = "PreCopy"
    POST_COPY = "PostCopy"
    PAUSED = "Paused"


class MigrationConfiguration(WireModel):
    """``spec.configuration.migrations`` of the KubeVirt object (descriptions are upstream's)."""

    node_drain_taint_key: str | None = Field(
        default=None,
        description="NodeDrainTaintKey defines the taint key that indicates a node should be drained. "
        "Default: kubevirt.io/drain",
    )
    parallel_outbound_migrations_per_node: int | None = Field(
        default=None,
        ge=1,
        description="ParallelOutboundMigrationsPerNode is the maximum number of concurrent outgoing "
        "live migrations allowed per node. Defaults to 2",
    )
    parallel_migrations_per_cluster: int | None = Field(
        default=None,
        ge=1,
        description="ParallelMigrationsPerCluster is the total number of concurrent live migrations "
        "allowed cluster-wide. Defaults to 5",
    )
    allow_auto_converge: bool | None = Field(
        default=None,
        description="AllowAutoConverge allows the platform to compromise performance/availability of VMIs "
        "to guarantee successful VMI live migrations. Defaults to false",
    )
    bandwidth_per_migration: Quantity | None = Field(
        default=None,
        description="BandwidthPerMigration limits the amount of network bandwidth live migrations are "
        "allowed to use. The value is in quantity per second. Defaults to 0 (no limit)",
    )
    completion_timeout_per_gi_b: int | None = Field(
        default=None,
        ge=1,
        alias="completionTimeoutPerGiB",
        description="CompletionTimeoutPerGiB is the maximum number of seconds per GiB a migration is "
        "allowed to take. Defaults to 150",
    )
    max_downtime_ms: int | None = Field(
        default=None,
        ge=1,
        le=2_000_000,
        description="MaxDowntimeMs specifies the maximum tolerable downtime (in milliseconds) during "
        "switchover. Defaults to 900",
    )
    progress_timeout: int | None = Field(
        default=None,
        ge=1,
        description="ProgressTimeout is the maximum number of seconds a live migration is allowed to "
        "make no progress. Defaults to 150",
    )
    unsafe_migration_override: bool | None = Field(
        default=None,
        description="UnsafeMigrationOverride allows live migrations to occur even if the compatibility "
        "check indicates the migration will be unsafe to the guest. Defaults to false",
    )
    allow_post_copy: bool | None = Field(
        default=None,
        description="AllowPostCopy enables post-copy live migrations. Defaults to false",
    )
    allow_workload_disruption: bool | None = Field(
        default=None,
        description="AllowWorkloadDisruption indicates that the migration shouldn't be canceled after "
        "acceptableCompletionTime is exceeded. Defaults to false",
    )
    disable_tls: bool | None = Field(
        default=None,
        alias="disableTLS",
        description="When set to true, DisableTLS will disable the additional layer of live migration "
        "encryption provided by KubeVirt. Defaults to false",
    )
    network: str | None = Field(
        default=None,
        description="Network is the name of the CNI network to use for live migrations (kept: vmplane "
        "migrates over each node's migration address).",
    )


class VirtualMachineInstanceMigrationState(WireModel):
    """One migration of a VMI as its VMI and its migration object both report it (upstream's names).

    The source agent writes ``startTimestamp``, ``endTimestamp``, ``completed``, ``failed``,
    ``failureReason``, ``mode`` and ``abortStatus``; the target agent ``targetNodeAddress``; the
    migration controller ``sourceNode``, ``targetNode``, ``migrationUid`` and ``abortRequested``.
    """

    start_timestamp: str | None = Field(default=None, description="The time the migration action began")
    end_timestamp: str | None = Field(default=None, description="The time the migration action ended")
    target_node_domain_ready_timestamp: str | None = Field(
        default=None, description="The timestamp at which the target node detects the domain is active"
    )
    target_node_domain_detected: bool | None = Field(
        default=None, description="The Target Node has seen the Domain Start Event"
    )
    target_node_address: str | None = Field(
        default=None,
        description="The address of the target node to use for the migration (host:port of its incoming "
        "QEMU)",
    )
    target_node: str | None = Field(default=None, description="The target node that the VMI is moving to")
    source_node: str | None = Field(default=None, description="The source node that the VMI originated on")
    completed: bool | None = Field(default=None, description="Indicates the migration completed")
    failed: bool | None = Field(default=None, description="Indicates that the migration failed")
    abort_requested: bool | None = Field(
        default=None, description="Indicates that the migration has been requested to abort"
    )
    abort_status: MigrationAbortStatus | None = Field(
        default=None, description="Indicates the final status of the live migration abortion"
    )
    failure_reason: str | None = Field(
        default=None, description="Contains the reason why the migration failed"
    )
    migration_uid: str | None = Field(
        default=None, description="The VirtualMachineInstanceMigration object associated with this migration"
    )
    mode: MigrationMode | None = Field(
        default=None, description="Lets us know if the vmi is currently running pre or post copy migration"
    )
    target_direct_migration_node_ports: dict[str, int] | None = Field(
        default=None,
        description="The list of ports opened for live migration on the destination node (each port "
        "the target listens on, with the stream it carries: 49152 the guest's state, 49153 its disks)",
    )
    migration_configuration: MigrationConfiguration | None = Field(
        default=None, description="Config contains migration configuration options"
    )


class VirtualMachineInstanceMigrationSpec(WireModel):
    """What to migrate, and where it may go (on top of the VMI's own placement)."""

    vmi_name: str | None = Field(
        default=None,
        description="The name of the VMI to perform the migration on. VMI must exist in "
        "the migration objects namespace",
    )
    added_node_selector: dict[str, str] | None = Field(
        default=None,
        description="AddedNodeSelector is an additional selector that can be used to complement a "
        "NodeSelector or NodeAffinity as set on the VM to restrict the set of allowed target nodes for "
        "a migration. In case of key collisions, values set on the VM objects are going to be "
        "preserved to ensure that addedNodeSelector can only restrict but not bypass constraints "
        "already set on the VM object.",
    )


class VirtualMachineInstanceMigrationStatus(WireModel):
    """Written by the migration controller."""

    phase: MigrationPhase | None = None
    conditions: list[Condition] | None = Field(default=None, description="The migration's conditions.")
    phase_transition_timestamps: list[dict[str, str]] | None = Field(
        default=None,
        description="PhaseTransitionTimestamp is the timestamp of when the last phase change occurred",
    )
    migration_state: VirtualMachineInstanceMigrationState | None = Field(
        default=None, description="Represents the status of a live migration"
    )


class VirtualMachineInstanceMigration(WireModel):
    """A request to live-migrate one VMI; deleting it while in flight cancels the migration."""

    api_version: Literal["kubevirt.io/v1"] = Field(
        default="kubevirt.io/v1",
        description="APIVersion defines the versioned schema of this representation of an object.",
    )
    kind: Literal["VirtualMachineInstanceMigration"] = Field(
        default="VirtualMachineInstanceMigration",
        description="Kind is a string value representing the REST resource this object represents.",
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: VirtualMachineInstanceMigrationSpec = Field(default_factory=VirtualMachineInstanceMigrationSpec)
    status: VirtualMachineInstanceMigrationStatus | None = None


class MigrateOptions(WireModel):
    """The body of ``PUT .../virtualmachines/NAME/migrate`` (upstream's ``MigrateOptions``)."""

    api_version: str | None = None
    kind: str | None = None
    dry_run: list[Literal["All"]] | None = None
    added_node_selector: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class MigrationLimits:
    """The migration settings in force: the configured values, upstream's defaults for the rest."""

    parallel_migrations_per_cluster: int = 5
    parallel_outbound_migrations_per_node: int = 2
    progress_timeout: int = 150
    completion_timeout_per_gib: int = 150
    max_downtime_ms: int = 900
    bandwidth_bytes_per_second: int = 0
    node_drain_taint_key: str = "kubevirt.io/drain"

    @classmethod
    def of(cls, configured: MigrationConfiguration | None) -> MigrationLimits:
        """The limits of ``spec.configuration.migrations`` (None: all defaults)."""
        if configured is None:
            return cls()
        given: dict[str, Any] = {
            "parallel_migrations_per_cluster": configured.parallel_migrations_per_cluster,
            "parallel_outbound_migrations_per_node": configured.parallel_outbound_migrations_per_node,
            "progress_timeout": configured.progress_timeout,
            "completion_timeout_per_gib": configured.completion_timeout_per_gi_b,
            "max_downtime_ms": configured.max_downtime_ms,
            "node_drain_taint_key": configured.node_drain_taint_key,
        }
        if configured.bandwidth_per_migration is not None:
            given["bandwidth_bytes_per_second"] = configured.bandwidth_per_migration.bytes()
        return cls(**{k: v for k, v in given.items() if v is not None})

    def completion_timeout(self, memory_bytes: int) -> float:
        """Seconds a migration of a guest of ``memory_bytes`` may take (upstream: per GiB, at least one)."""
        return self.completion_timeout_per_gib * max(memory_bytes / 2**30, 1.0)


def added_node_selector_causes(selector: Mapping[str, Any] | None, field: str) -> list[FieldCause]:
    """Why ``selector`` is not a node selector: label keys and values, as a Pod's ``nodeSelector``."""
    causes: list[FieldCause] = []
    for key, value in (selector or {}).items():
        causes += [
            FieldCause(field, f"Invalid value: {json.dumps(key)}: {m}") for m in qualified_name_errors(key)
        ]
        if not isinstance(value, str):
            causes.append(FieldCause(f"{field}[{key}]", "Invalid value: must be a string"))
            continue
        causes += [
            FieldCause(f"{field}[{key}]", f"Invalid value: {json.dumps(value)}: {m}")
            for m in label_value_errors(value)
        ]
    return causes


def migration_spec_causes(spec: VirtualMachineInstanceMigrationSpec) -> list[FieldCause]:
    """Upstream's ``ValidateVirtualMachineInstanceMigrationSpec``, and the selector's labels."""
    if not spec.vmi_name:
        return [FieldCause("spec.vmiName", "vmiName is missing", CauseType.FIELD_VALUE_REQUIRED)]
    return added_node_selector_causes(spec.added_node_selector, "spec.addedNodeSelector")
