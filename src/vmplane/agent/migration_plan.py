"""The node agent's part in a live migration: a pure ``migration_step(...) -> MigrationStep | None``.

Both agents read the VMI's ``status.migrationState`` (written first by the migration controller:
source, target, migration uid) and take their turn; neither talks to the other except through the
VMI, so every step is level-triggered and survives an agent restart:

1. the source publishes its machine's device layout (``LAYOUT_ANNOTATION``, tagged with the
   migration uid) so the target can be built with the same device tree;
2. the target prepares the VMI's disks, boots an incoming machine from the running spec and that
   layout, and writes ``targetNodeAddress`` (and the ports, as upstream's
   ``targetDirectMigrationNodePorts``);
3. the source writes ``startTimestamp`` and starts streaming; once its driver says the migration
   ended it writes ``completed`` or ``failed`` (with ``failureReason``; ``abortStatus`` when asked
   to abort) and ``endTimestamp``;
4. on ``completed`` the target, whose machine now runs the guest, hands the VMI over to itself
   (``status.nodeName``); the source then stops and forgets its Migrated machine and its files;
   on ``failed`` the target throws its incoming machine away and the guest runs on at the source.

While a migration is in flight on the source nothing is hot-plugged there (the target is being
built from the layout): ``Hold`` stands for "nothing to do now, and no normal sync either".
``None`` means the VMI has no migration this node takes part in: the agent's usual ``decide``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from vmplane.api.migration import (
    PROGRESS_ANNOTATION,
    MigrationAbortStatus,
    MigrationMode,
    VirtualMachineInstanceMigrationState,
)
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.host.paths import MachineSpecError
from vmplane.hypervisor.base import MachineSpec, MachineState, ObservedMachine
from vmplane.hypervisor.migration import MigrationEndpoint, MigrationProgress, MigrationStatus

__all__ = [
    "DISK_PORT_ROLE",
    "LAYOUT_ANNOTATION",
    "MEMORY_PORT_ROLE",
    "PROGRESS_ANNOTATION",
    "AbandonTarget",
    "CancelSource",
    "HandOver",
    "Hold",
    "MigrationStep",
    "PrepareTarget",
    "PublishLayout",
    "ReportMigration",
    "ReportProgress",
    "RetireSource",
    "StartSource",
    "copied_disks",
    "endpoint_of",
    "layout_of",
    "migration_step",
    "progress_annotation",
    "published",
]

#: The source's device layout for the target, as ``{"migrationUid": ..., "layout": ...}``.
LAYOUT_ANNOTATION = "vmplane.io/migration-layout"
#: Values of ``targetDirectMigrationNodePorts``: which of the target's ports carries what (upstream's
#: own port numbers for the two streams: libvirt's direct migration and its block migration).
MEMORY_PORT_ROLE = 49152
DISK_PORT_ROLE = 49153
_ENDED = frozenset({MachineState.STOPPED, MachineState.CRASHED})


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait for the other side (or for the driver): write nothing, hot-plug nothing."""


@dataclass(frozen=True, slots=True)
class PublishLayout:
    """Source: write the machine's device layout for migration ``uid``."""

    uid: str


@dataclass(frozen=True, slots=True)
class PrepareTarget:
    """Target: create the disks, boot an incoming machine from ``spec`` and ``layout``, write where
    it listens into ``state``."""

    spec: MachineSpec
    layout: str
    copied: tuple[str, ...]
    state: VirtualMachineInstanceMigrationState


@dataclass(frozen=True, slots=True)
class StartSource:
    """Source: write ``state`` (started), then stream the machine to ``target``."""

    target: MigrationEndpoint
    copied: tuple[str, ...]
    state: VirtualMachineInstanceMigrationState


@dataclass(frozen=True, slots=True)
class ReportProgress:
    """Source: publish how far the migration got (``PROGRESS_ANNOTATION``), and look again soon."""

    progress: MigrationProgress


@dataclass(frozen=True, slots=True)
class CancelSource:
    """Source: abort the migration in flight (its end is reported by a later step)."""


@dataclass(frozen=True, slots=True)
class ReportMigration:
    """Write ``state`` into the VMI's ``status.migrationState``; ``event`` (reason, message, warning)."""

    state: VirtualMachineInstanceMigrationState
    event: tuple[str, str, bool] | None = None


@dataclass(frozen=True, slots=True)
class HandOver:
    """Target: the guest runs here; bind the VMI to this node, with ``state``."""

    state: VirtualMachineInstanceMigrationState


@dataclass(frozen=True, slots=True)
class AbandonTarget:
    """Target: the migration failed; stop and forget the incoming machine and its files."""


@dataclass(frozen=True, slots=True)
class RetireSource:
    """Source: the guest runs on the target; stop and forget what is left here and its files."""


MigrationStep = (
    Hold
    | PublishLayout
    | PrepareTarget
    | StartSource
    | ReportProgress
    | CancelSource
    | ReportMigration
    | HandOver
    | AbandonTarget
    | RetireSource
)


def copied_disks(vmi: VirtualMachineInstance) -> tuple[str, ...]:
    """The disks whose images live on the source node only and change there: containerDisk overlays
    and emptyDisks. Claims are on shared storage (or the VMI is not migratable); read-only seeds are
    made again, identically, on the target."""
    local = {
        v.name for v in vmi.spec.volumes or () if v.container_disk is not None or v.empty_disk is not None
    }
    disks = vmi.spec.domain.devices.disks or ()
    return tuple(sorted(d.name for d in disks if d.name in local and d.cdrom is None))


def layout_of(vmi: VirtualMachineInstance, uid: str) -> str | None:
    """The layout the source published for migration ``uid``, None if none (or another's)."""
    raw = (vmi.metadata.annotations or {}).get(LAYOUT_ANNOTATION)
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(found, dict) or found.get("migrationUid") != uid:
        return None
    layout = found.get("layout")
    return layout if isinstance(layout, str) else None


def endpoint_of(state: VirtualMachineInstanceMigrationState) -> MigrationEndpoint | None:
    """Where the target listens, from ``targetNodeAddress`` and ``targetDirectMigrationNodePorts``."""
    host = state.target_node_address
    ports = state.target_direct_migration_node_ports or {}
    memory = [int(p) for p, role in ports.items() if role == MEMORY_PORT_ROLE and p.isdigit()]
    disk = [int(p) for p, role in ports.items() if role == DISK_PORT_ROLE and p.isdigit()]
    if not host or len(memory) != 1 or not 0 < memory[0] < 65536:
        return None
    return MigrationEndpoint(host=host, port=memory[0], disk_port=disk[0] if len(disk) == 1 else None)


def _failed(
    state: VirtualMachineInstanceMigrationState, reason: str, *, now: str, aborted: bool = False
) -> ReportMigration:
    update: dict[str, object] = {"failed": True, "failure_reason": reason, "end_timestamp": now}
    if state.abort_requested:
        update["abort_status"] = MigrationAbortStatus.SUCCEEDED if aborted else MigrationAbortStatus.FAILED
    event = ("MigrationAborted", reason, False) if aborted else ("MigrationFailed", reason, True)
    return ReportMigration(state.model_copy(update=update), event)


def _target_step(
    vmi: VirtualMachineInstance,
    state: VirtualMachineInstanceMigrationState,
    observed: ObservedMachine | None,
    desired: MachineSpec | MachineSpecError,
    *,
    now: str,
) -> MigrationStep | None:
    if state.failed:
        return AbandonTarget() if observed is not None else None
    if state.completed:
        if observed is not None and observed.state is MachineState.RUNNING:
            update = {"target_node_domain_detected": True, "target_node_domain_ready_timestamp": now}
            return HandOver(state.model_copy(update=update))
        return Hold()
    if state.abort_requested and not state.start_timestamp:
        return Hold()  # the source reports the abort; the failure then abandons this side
    if observed is not None and observed.state in _ENDED:
        if state.start_timestamp:
            return Hold()  # the source's stream fails and reports it
        reason = f"the target machine on {state.target_node} ended: {observed.reason or observed.state.value}"
        return _failed(state, reason, now=now)
    if state.target_node_address:
        return Hold()
    if isinstance(desired, MachineSpecError):
        return _failed(state, f"the target cannot run the VMI: {desired}", now=now)
    layout = layout_of(vmi, state.migration_uid or "")
    if layout is None:
        return Hold()  # the source has not published its layout yet
    return PrepareTarget(desired, layout, copied_disks(vmi), state)


def _source_step(
    vmi: VirtualMachineInstance,
    state: VirtualMachineInstanceMigrationState,
    observed: ObservedMachine | None,
    progress: MigrationProgress | None,
    *,
    now: str,
) -> MigrationStep | None:
    if state.failed:
        return None  # the guest runs on here as before
    if state.completed:
        return Hold()  # the target hands the VMI over to itself
    status = progress.status if progress is not None else MigrationStatus.NONE
    if not state.start_timestamp:
        status = MigrationStatus.NONE  # what the driver says is of an earlier migration's end
    if observed is None or observed.state is not MachineState.RUNNING:
        if observed is not None and observed.state is MachineState.MIGRATED:
            return _completed(state, progress, now=now)
        return None  # the guest ended: the usual report of it
    if status is MigrationStatus.NONE:
        if state.abort_requested:
            return _failed(state, "the migration was cancelled before it started", now=now, aborted=True)
        if state.start_timestamp:
            return _failed(state, "the source agent restarted while the migration ran", now=now)
        if layout_of(vmi, state.migration_uid or "") is None:
            return PublishLayout(state.migration_uid or "")
        target = endpoint_of(state)
        if target is None:
            return Hold()
        started = state.model_copy(update={"start_timestamp": now, "mode": MigrationMode.PRE_COPY})
        return StartSource(target, copied_disks(vmi), started)
    if status is MigrationStatus.ACTIVE:
        assert progress is not None
        return CancelSource() if state.abort_requested else ReportProgress(progress)
    if status is MigrationStatus.COMPLETED:
        return _completed(state, progress, now=now)
    assert progress is not None
    aborted = status is MigrationStatus.CANCELLED
    reason = progress.error or ("the migration was cancelled" if aborted else "the migration failed")
    return _failed(state, reason, now=now, aborted=aborted and bool(state.abort_requested))


def _completed(
    state: VirtualMachineInstanceMigrationState, progress: MigrationProgress | None, *, now: str
) -> ReportMigration:
    took = f" in {progress.total_time_ms} ms" if progress is not None and progress.total_time_ms else ""
    if progress is not None and progress.downtime_ms is not None:
        took += f" (guest downtime {progress.downtime_ms} ms)"
    message = f"The VirtualMachineInstance migrated to node {state.target_node}{took}."
    return ReportMigration(
        state.model_copy(update={"completed": True, "end_timestamp": now}), ("Migrated", message, False)
    )


def migration_step(
    vmi: VirtualMachineInstance | None,
    observed: ObservedMachine | None,
    desired: MachineSpec | MachineSpecError,
    *,
    node: str,
    progress: MigrationProgress | None,
    now: str,
) -> MigrationStep | None:
    """This node's next step in ``vmi``'s migration; ``progress`` is the driver's (source only)."""
    status = vmi.status if vmi is not None else None
    state = status.migration_state if status is not None else None
    if vmi is None or status is None or state is None or vmi.metadata.deletion_timestamp:
        return None
    bound = status.node_name
    if state.target_node == node and bound != node:
        if bound != state.source_node:
            return None
        return _target_step(vmi, state, observed, desired, now=now)
    if state.source_node == node:
        if bound == node:
            return _source_step(vmi, state, observed, progress, now=now)
        if state.completed and observed is not None:
            return RetireSource()
    return None


def published(annotations: Mapping[str, str] | None, uid: str, layout: str) -> dict[str, str]:
    """``annotations`` with the layout of migration ``uid`` published."""
    return {**(annotations or {}), LAYOUT_ANNOTATION: json.dumps({"migrationUid": uid, "layout": layout})}


def progress_annotation(uid: str, progress: MigrationProgress) -> str:
    """The ``PROGRESS_ANNOTATION`` value of ``progress`` in migration ``uid``."""
    return json.dumps(
        {
            "migrationUid": uid,
            "transferredBytes": progress.transferred_bytes,
            "remainingBytes": progress.remaining_bytes,
            "totalBytes": progress.total_bytes,
            "dirtyBytesPerSecond": progress.dirty_bytes_per_second,
            "diskTransferredBytes": progress.disk_transferred_bytes,
            "diskTotalBytes": progress.disk_total_bytes,
        },
        sort_keys=True,
    )
