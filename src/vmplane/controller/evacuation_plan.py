"""The evacuation controller's decision for one node: which of its VMIs get a migration now. Pure.

Upstream's virt-controller evacuation controller (``pkg/virt-controller/watch/drain/evacuation``): a
node carrying the cluster's drain taint (``spec.configuration.migrations.nodeDrainTaintKey``,
``kubevirt.io/drain`` by default, effect ``NoSchedule``; the taint's value does not matter) has
every VMI evacuated. A VMI is a candidate when it still runs (not final, not being deleted), its
eviction strategy asks for a migration (``LiveMigrate``, or ``LiveMigrateIfPossible`` while
``LiveMigratable`` is True), it is ``LiveMigratable``, and it has no unfinished migration nor a
migration state in flight (or completed but not yet handed over to the target). As many candidates
as the free spots allow get a migration: the cluster's ``parallelMigrationsPerCluster`` less the
migrations running, and the node's ``parallelOutboundMigrationsPerNode`` less those running from
this node's VMIs, whichever is smaller. A ``LiveMigrate`` VMI that is not migratable gets a
``FailedCreate`` event for each spot left over, as upstream's.

Upstream also evacuates the VMIs whose ``status.evacuationNodeName`` its pod-eviction webhook set
(``kubectl drain`` evicting the launcher pod). vmplane has no launcher pods nor eviction
subresource, so the taint is its only trigger; ``vmplane drain`` puts it on the node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.migratable import live_migratable, migrates_on_eviction
from vmplane.api.migration import ACTIVE_PHASES, MIGRATION_SELECTOR_LABEL, MigrationPhase
from vmplane.api.migration import VirtualMachineInstanceMigration as Migration
from vmplane.api.scheduling import Taint
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.store.base import JsonObject

__all__ = [
    "EVACUATION_MIGRATION_ANNOTATION",
    "EVACUATION_PREFIX",
    "EvacuationPlan",
    "drain_taint_on",
    "evacuation_migration",
    "plan_evacuation",
]

#: Upstream's annotation on the migrations it creates; the value is the evacuated node's name.
EVACUATION_MIGRATION_ANNOTATION = "kubevirt.io/evacuationMigration"
#: Upstream's ``generateName`` of evacuation migrations.
EVACUATION_PREFIX = "kubevirt-evacuation-"
#: Seconds before a node whose spots are all taken is looked at again (upstream: 5 s).
FULL_RETRY = 5.0
#: Seconds before a node with only unmigratable VMIs is looked at again, renewing their warnings.
WARNING_RETRY = 60.0

_FINAL = frozenset({VMIPhase.SUCCEEDED, VMIPhase.FAILED})
VMIKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class EvacuationPlan:
    """``migrate``: the VMIs (namespace, name) to create a migration for now; ``not_migratable``:
    those to warn about; ``retry_after``: when to look again (None: on the next change)."""

    migrate: tuple[VMIKey, ...] = ()
    not_migratable: tuple[VMIKey, ...] = ()
    retry_after: float | None = None


def drain_taint_on(node: Mapping[str, Any], taint_key: str) -> Taint | None:
    """The node's drain taint (that key, effect ``NoSchedule``), None when it has none."""
    for raw in (node.get("spec") or {}).get("taints") or ():
        taint = Taint.from_wire(raw)
        if taint.key == taint_key and taint.effect == "NoSchedule":
            return taint
    return None


def _key(vmi: VirtualMachineInstance) -> VMIKey:
    return (vmi.metadata.namespace or "", vmi.metadata.name or "")


def _unfinished(migration: Migration) -> bool:
    phase = migration.status.phase if migration.status is not None else None
    return phase is None or phase in ACTIVE_PHASES


def _running(migration: Migration) -> bool:
    """Past ``Pending``: holding one of the cluster's spots (upstream's ``IsRunning``)."""
    phase = migration.status.phase if migration.status is not None else None
    return phase is not None and phase in ACTIVE_PHASES and phase is not MigrationPhase.PENDING


def _moving(vmi: VirtualMachineInstance) -> bool:
    """A migration is in flight, or has completed and the target has not taken the VMI over yet
    (the source writes ``completed`` before the target writes ``status.nodeName``; upstream waits
    for the source pod to go, which covers the same window)."""
    state = vmi.status.migration_state if vmi.status is not None else None
    if state is None or state.failed:
        return False
    return not state.completed or state.source_node == (vmi.status.node_name if vmi.status else None)


def _candidates(
    vmis: Sequence[VirtualMachineInstance],
    migrations: Sequence[Migration],
    config: KubeVirtConfiguration,
) -> tuple[list[VMIKey], list[VMIKey]]:
    """The VMIs to migrate and the ones that should but cannot (upstream's
    ``filterRunningNonMigratingVMIs``)."""
    migrating = {(m.metadata.namespace or "", m.spec.vmi_name or "") for m in migrations if _unfinished(m)}
    movable: list[VMIKey] = []
    stuck: list[VMIKey] = []
    for vmi in vmis:
        phase = vmi.status.phase if vmi.status is not None else None
        if phase in _FINAL or vmi.metadata.deletion_timestamp:
            continue
        if not migrates_on_eviction(vmi, config):
            continue
        if not live_migratable(vmi):
            stuck.append(_key(vmi))
            continue
        if _key(vmi) in migrating or _moving(vmi):
            continue
        movable.append(_key(vmi))
    return movable, stuck


def plan_evacuation(
    node: Mapping[str, Any],
    *,
    vmis: Sequence[VirtualMachineInstance],
    migrations: Sequence[Migration],
    config: KubeVirtConfiguration,
) -> EvacuationPlan:
    """What to do for ``node`` (a Node object) given the VMIs bound to it, every migration of the
    cluster and the cluster's configuration."""
    limits = config.migration_limits
    if drain_taint_on(node, limits.node_drain_taint_key) is None:
        return EvacuationPlan()
    movable, stuck = _candidates(vmis, migrations, config)
    if not movable and not stuck:
        return EvacuationPlan()
    running = [m for m in migrations if _running(m)]
    here = {_key(v) for v in vmis}
    from_here = sum(1 for m in running if (m.metadata.namespace or "", m.spec.vmi_name or "") in here)
    free = min(
        limits.parallel_migrations_per_cluster - len(running),
        limits.parallel_outbound_migrations_per_node - from_here,
    )
    if free <= 0:
        return EvacuationPlan(retry_after=FULL_RETRY)
    chosen = movable[:free]
    warned = stuck[: free - len(chosen)]
    retry = WARNING_RETRY if not chosen and warned else None
    return EvacuationPlan(migrate=tuple(chosen), not_migratable=tuple(warned), retry_after=retry)


def evacuation_migration(namespace: str, vmi_name: str, *, node: str, suffix: str) -> JsonObject:
    """The migration upstream's ``GenerateNewMigration`` creates for a VMI evacuated from ``node``.

    The name is given (``suffix``: five random characters, as the API would add to the
    ``generateName``) so the object is the same whether written through the API or a store.
    """
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "name": f"{EVACUATION_PREFIX}{suffix}",
            "generateName": EVACUATION_PREFIX,
            "namespace": namespace,
            "annotations": {EVACUATION_MIGRATION_ANNOTATION: node},
            "labels": {MIGRATION_SELECTOR_LABEL: vmi_name},
        },
        "spec": {"vmiName": vmi_name},
    }
