"""The migration controller's decision for one VirtualMachineInstanceMigration. Pure.

The phases are upstream's. ``Pending`` waits for the cluster's and the source node's limits;
``Scheduling`` picks a target with the scheduler's filters (never the source; the VMI's own node
selector wins over ``addedNodeSelector`` on a shared key, so the selector only narrows); ``Scheduled``
hands the migration to the agents by writing ``status.migrationState`` on the VMI. From then on the
phase follows what the agents write into that state: the target's address (``TargetReady``), the
source's start (``Running``), ``completed`` or ``failed``. Deleting an active migration asks the
agents to abort (``abortRequested``); the migration object mirrors the VMI's state, as upstream's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vmplane.api.guest_resources import Resources
from vmplane.api.migration import (
    ACTIVE_PHASES,
    MigrationLimits,
    MigrationPhase,
    VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationState,
    VirtualMachineInstanceMigrationStatus,
)
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.scheduler.scheduling import choose_node, unschedulable_message

__all__ = ["MigrationDecision", "decide_migration", "decide_through", "target_spec_selector"]

_ORDER = list(MigrationPhase)
_FINAL_VMI = frozenset({VMIPhase.SUCCEEDED, VMIPhase.FAILED})


@dataclass(frozen=True, slots=True)
class MigrationDecision:
    """What to write: the migration's new phase and state, the VMI's migration state (None: leave
    each as it is); ``failure`` says why a migration fails, ``waiting`` why it does not move on."""

    phase: MigrationPhase | None = None
    migration_state: VirtualMachineInstanceMigrationState | None = None
    vmi_state: VirtualMachineInstanceMigrationState | None = None
    failure: str | None = None
    waiting: str | None = None
    #: Phases entered and left on the way to ``phase`` in this one decision (each gets its stamp).
    passed: tuple[MigrationPhase, ...] = ()


def target_spec_selector(
    vmi_selector: Mapping[str, str] | None, added: Mapping[str, str] | None
) -> dict[str, str]:
    """The target's node selector: ``added`` narrowed by the VMI's, whose values win on a shared key."""
    return {**(added or {}), **(vmi_selector or {})}


def _phase_of_state(state: VirtualMachineInstanceMigrationState) -> MigrationPhase:
    if state.failed:
        return MigrationPhase.FAILED
    if state.completed:
        return MigrationPhase.SUCCEEDED
    if state.start_timestamp:
        return MigrationPhase.RUNNING
    if state.target_node_address:
        return MigrationPhase.TARGET_READY
    return MigrationPhase.PREPARING_TARGET


def _gone_through(phase: MigrationPhase, advanced: MigrationPhase | None) -> tuple[MigrationPhase, ...]:
    """The phases between ``phase`` and ``advanced`` that a migration which got there went through:
    a cache that took in two of the agents' writes at once (the target's address, then the source's
    start) shows it past a phase it never saw, which is still stamped. None on the way to Failed."""
    if advanced is None or advanced is MigrationPhase.FAILED:
        return ()
    return tuple(_ORDER[_ORDER.index(phase) + 1 : _ORDER.index(advanced)])


def _limit_reached(
    source: str, others: Sequence[VirtualMachineInstanceMigration], limits: MigrationLimits
) -> str | None:
    """Why a new migration from ``source`` must wait for others in flight, None when it need not."""
    running = [
        m
        for m in others
        if m.status is not None
        and m.status.phase in ACTIVE_PHASES
        and m.status.phase is not MigrationPhase.PENDING
    ]
    if len(running) >= limits.parallel_migrations_per_cluster:
        allowed = limits.parallel_migrations_per_cluster
        return f"{len(running)} migrations in flight: the cluster allows {allowed}"
    outbound = [
        m
        for m in running
        if m.status is not None
        and m.status.migration_state is not None
        and m.status.migration_state.source_node == source
    ]
    if len(outbound) >= limits.parallel_outbound_migrations_per_node:
        return (
            f"{len(outbound)} migrations leave node {source}: a node allows "
            f"{limits.parallel_outbound_migrations_per_node}"
        )
    return None


def _schedule(
    migration: VirtualMachineInstanceMigration,
    vmi: VirtualMachineInstance,
    source: str,
    nodes: Iterable[Mapping[str, Any]],
    used: Mapping[str, Resources],
) -> MigrationDecision:
    selector = target_spec_selector(vmi.spec.node_selector, migration.spec.added_node_selector)
    spec = vmi.spec.model_copy(update={"node_selector": selector or None})
    candidates = [n for n in nodes if (n.get("metadata") or {}).get("name") != source]
    target = choose_node(spec, candidates, used=used)
    if target is None:
        return MigrationDecision(waiting=unschedulable_message(spec, candidates, used=used))
    state = VirtualMachineInstanceMigrationState(
        source_node=source, target_node=target, migration_uid=migration.metadata.uid
    )
    return MigrationDecision(phase=MigrationPhase.SCHEDULED, migration_state=state)


def decide_migration(
    migration: VirtualMachineInstanceMigration,
    vmi: VirtualMachineInstance | None,
    *,
    nodes: Iterable[Mapping[str, Any]],
    used: Mapping[str, Resources],
    others: Sequence[VirtualMachineInstanceMigration],
    limits: MigrationLimits,
) -> MigrationDecision:
    """The next step of ``migration`` of ``vmi`` (``nodes``: the Node objects; ``used``: what each
    node's VMIs request; ``others``: the namespace-wide and cluster-wide other migrations)."""
    phase = migration.status.phase if migration.status is not None else None
    phase = phase or MigrationPhase.PENDING
    if phase not in ACTIVE_PHASES:
        return MigrationDecision()
    status = vmi.status if vmi is not None else None
    if vmi is None or status is None or status.phase in _FINAL_VMI:
        return MigrationDecision(phase=MigrationPhase.FAILED, failure="the VMI is gone or no longer runs")
    source = status.node_name or ""
    current = status.migration_state
    state = current if current is not None and current.migration_uid == migration.metadata.uid else None
    if migration.metadata.deletion_timestamp:
        if state is not None and not state.abort_requested:
            return MigrationDecision(vmi_state=state.model_copy(update={"abort_requested": True}))
        return MigrationDecision()
    if state is not None:
        found = _phase_of_state(state)
        advanced = found if _ORDER.index(found) > _ORDER.index(phase) else None
        failure = state.failure_reason or "the migration failed" if found is MigrationPhase.FAILED else None
        return MigrationDecision(
            phase=advanced,
            migration_state=state,
            failure=failure if advanced else None,
            passed=_gone_through(phase, advanced),
        )
    if phase is MigrationPhase.PENDING:
        waiting = _limit_reached(source, others, limits)
        return (
            MigrationDecision(waiting=waiting)
            if waiting
            else MigrationDecision(phase=MigrationPhase.SCHEDULING)
        )
    if phase is MigrationPhase.SCHEDULING:
        return _schedule(migration, vmi, source, nodes, used)
    chosen = migration.status.migration_state if migration.status is not None else None
    if phase is MigrationPhase.SCHEDULED and chosen is not None:
        return MigrationDecision(phase=MigrationPhase.PREPARING_TARGET, vmi_state=chosen)
    # Handed over, but the VMI read here does not show it yet (a cache behind the write): wait.
    return MigrationDecision(waiting="the VMI does not carry this migration's state yet")


#: Phases the controller alone moves a migration out of, with nothing to wait for from the agents.
_CONTROLLER_PHASES = frozenset({MigrationPhase.SCHEDULING, MigrationPhase.SCHEDULED})


def decide_through(
    migration: VirtualMachineInstanceMigration,
    vmi: VirtualMachineInstance | None,
    *,
    nodes: Iterable[Mapping[str, Any]],
    used: Mapping[str, Resources],
    others: Sequence[VirtualMachineInstanceMigration],
    limits: MigrationLimits,
) -> MigrationDecision:
    """``decide_migration`` taken as far as it goes at once: a migration with room and a target is
    Pending, Scheduling and Scheduled in one decision that hands the VMI its state (so the agents
    start one write after the request, not three), each phase passed listed in ``passed``."""
    passed: list[MigrationPhase] = []
    chosen: VirtualMachineInstanceMigrationState | None = None
    while True:
        decision = decide_migration(migration, vmi, nodes=nodes, used=used, others=others, limits=limits)
        chosen = decision.migration_state or chosen
        if decision.phase not in _CONTROLLER_PHASES or decision.vmi_state is not None or decision.waiting:
            return replace(decision, migration_state=chosen, passed=(*passed, *decision.passed))
        assert decision.phase is not None
        passed.append(decision.phase)
        before = migration.status or VirtualMachineInstanceMigrationStatus()
        status = before.model_copy(update={"phase": decision.phase, "migration_state": chosen})
        migration = migration.model_copy(update={"status": status})
