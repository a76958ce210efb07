"""Whether to start a migration by itself for a guest its node's placement excludes. Pure.

It does when the VM or the KubeVirt object opts in with ``vmplane.io/migrate-on-placement-change:
"true"`` (an annotation: KubeVirt's schema stays upstream's), ``rollout.placement`` finds the guest's
node excluded, the VMI runs, can be migrated (``LiveMigratable`` not False), and no migration of the
VMI is in flight: one at a time, as upstream's admission insists. The migration controller then
sends the guest to a node its (new) placement admits. Without the opt-in the violation is only
reported, and ``vmplane migrate VM`` moves the guest on demand.

A placement migration that has not yet been scheduled when the violation goes (the placement was
reverted, or the node relabelled) is withdrawn, as upstream's workload updater aborts its migrations
once no change waits for them: left alone it would move a guest that has nowhere it must go.

A migration that failed is tried again after ``RETRY_AFTER_FAILURE`` seconds, not at once, so a
target that keeps refusing the guest does not turn into a stream of migrations. Names are the VMI's
and a counter (the store gives no ``generateName``): a second create of the same attempt conflicts
instead of starting a second migration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmplane.api.migratable import LIVE_MIGRATABLE
from vmplane.api.migration import (
    ACTIVE_PHASES,
    MIGRATION_SELECTOR_LABEL,
    MigrationPhase,
    VirtualMachineInstanceMigration,
)
from vmplane.api.timestamps import parse_timestamp
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.rollout.placement import PlacementViolation

__all__ = [
    "MIGRATE_ON_PLACEMENT_CHANGE",
    "PLACEMENT_MIGRATION",
    "RETRY_AFTER_FAILURE",
    "PlacementMigration",
    "opted_in",
    "placement_migration",
    "withdrawn",
]

#: The opt-in, on a VM or on the KubeVirt object (then for every VM).
MIGRATE_ON_PLACEMENT_CHANGE = "vmplane.io/migrate-on-placement-change"
#: Marks the migrations started here; the value is the uid of the VMI they move.
PLACEMENT_MIGRATION = "vmplane.io/placement-migration"
#: The phases in which a migration has not yet been handed to the nodes (withdrawing one costs nothing).
_UNSCHEDULED = frozenset({MigrationPhase.PENDING, MigrationPhase.SCHEDULING})
#: Seconds from a failed placement migration to the next attempt.
RETRY_AFTER_FAILURE = 30.0


@dataclass(frozen=True, slots=True)
class PlacementMigration:
    """The migration to create (None: none now) and when to look again (None: on the next change)."""

    create: dict[str, Any] | None = None
    retry_after: float | None = None


def opted_in(
    vm_annotations: Mapping[str, str] | None, kubevirt_annotations: Mapping[str, str] | None
) -> bool:
    """Whether the VM or the KubeVirt object asks for placement migrations."""
    return any(
        (annotations or {}).get(MIGRATE_ON_PLACEMENT_CHANGE) == "true"
        for annotations in (vm_annotations, kubevirt_annotations)
    )


def _in_flight(vmi: VirtualMachineInstance) -> bool:
    status = vmi.status
    state = status.migration_state if status is not None else None
    if status is None or state is None or state.failed:
        return False
    # A completed migration still moves the guest until its target takes over ``status.nodeName``.
    return not state.completed or status.node_name != state.target_node


def _failed_at(migration: VirtualMachineInstanceMigration) -> datetime | None:
    status = migration.status
    if status is None or status.phase is not MigrationPhase.FAILED:
        return None
    stamps = [s for s in status.phase_transition_timestamps or () if s.get("phase") == MigrationPhase.FAILED]
    return parse_timestamp(stamps[-1]["phaseTransitionTimestamp"]) if stamps else None


def _name(vmi_name: str, taken: set[str]) -> str:
    attempt = 1
    while f"{vmi_name}-placement-{attempt}" in taken:
        attempt += 1
    return f"{vmi_name}-placement-{attempt}"


def placement_migration(
    *,
    vmi: VirtualMachineInstance,
    violation: PlacementViolation | None,
    opted: bool,
    migrations: Sequence[VirtualMachineInstanceMigration],
    now: datetime,
) -> PlacementMigration:
    """The migration that moves ``vmi`` off a node its placement excludes, if one is due.

    ``migrations``: the migrations of the VMI's namespace (current; the caller reads them fresh)."""
    status = vmi.status
    if violation is None or not opted or status is None or status.phase is not VMIPhase.RUNNING:
        return PlacementMigration()
    live = status.condition(LIVE_MIGRATABLE)
    if (live is not None and live.status == "False") or _in_flight(vmi):
        return PlacementMigration()
    name = vmi.metadata.name or ""
    mine = [m for m in migrations if m.spec.vmi_name == name]
    if any(m.status is None or m.status.phase is None or m.status.phase in ACTIVE_PHASES for m in mine):
        return PlacementMigration()
    failures = [
        at
        for m in mine
        if (m.metadata.annotations or {}).get(PLACEMENT_MIGRATION) == vmi.metadata.uid
        and (at := _failed_at(m)) is not None
    ]
    if failures:
        wait = RETRY_AFTER_FAILURE - (now - max(failures)).total_seconds()
        if wait > 0:
            return PlacementMigration(retry_after=wait)
    migration = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "name": _name(name, {m.metadata.name or "" for m in migrations}),
            "namespace": vmi.metadata.namespace,
            "labels": {MIGRATION_SELECTOR_LABEL: name},
            "annotations": {PLACEMENT_MIGRATION: vmi.metadata.uid or ""},
        },
        "spec": {"vmiName": name},
    }
    return PlacementMigration(create=migration)


def withdrawn(
    *, vmi: VirtualMachineInstance, migrations: Sequence[VirtualMachineInstanceMigration]
) -> list[str]:
    """The names of the VMI's placement migrations to delete once its node admits its placement again:
    those not yet scheduled."""
    return [
        m.metadata.name or ""
        for m in migrations
        if m.spec.vmi_name == vmi.metadata.name
        and (m.metadata.annotations or {}).get(PLACEMENT_MIGRATION) == vmi.metadata.uid
        and not m.metadata.deletion_timestamp
        and (m.status is None or m.status.phase is None or m.status.phase in _UNSCHEDULED)
    ]
