"""The node agent's pure migration step, source side: what it does from the VMI's migration state
and what its driver reports (no agent, no driver)."""

from __future__ import annotations

from typing import Any

from vmplane.agent.migration_plan import (
    MEMORY_PORT_ROLE,
    PublishLayout,
    ReportMigration,
    ReportProgress,
    StartSource,
    migration_step,
    published,
)
from vmplane.api.migration import VirtualMachineInstanceMigrationState
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.hypervisor.base import MachineSpec, MachineState, ObservedMachine
from vmplane.hypervisor.migration import MigrationEndpoint, MigrationProgress, MigrationStatus

UID = "m-uid"
NOW = "2026-12-02T06:00:00Z"
RUNNING = ObservedMachine(name="ns/vm", state=MachineState.RUNNING)
SPEC = MachineSpec(name="ns/vm", uuid="6a1c5c8e-58a5-4c8e-9a55-3d1b2f7c0e11", sockets=1)


def state(**fields: Any) -> VirtualMachineInstanceMigrationState:
    return VirtualMachineInstanceMigrationState(
        source_node="node01", target_node="node02", migration_uid=UID, **fields
    )


def vmi(migration: VirtualMachineInstanceMigrationState, *, layout: bool = True) -> VirtualMachineInstance:
    annotations = published(None, UID, "{}") if layout else {}
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "vm", "namespace": "ns", "annotations": annotations},
            "spec": {"domain": {"memory": {"guest": "1Gi"}}},
            "status": {"phase": "Running", "nodeName": "node01", "migrationState": migration.to_wire()},
        }
    )


def source_step(
    migration: VirtualMachineInstanceMigrationState,
    progress: MigrationProgress | None = None,
    observed: ObservedMachine = RUNNING,
    *,
    layout: bool = True,
) -> Any:
    return migration_step(
        vmi(migration, layout=layout), observed, SPEC, node="node01", progress=progress, now=NOW
    )


READY = state(target_node_address="127.0.0.1", target_direct_migration_node_ports={"4444": MEMORY_PORT_ROLE})


def test_the_source_first_publishes_its_layout() -> None:
    assert source_step(state(), layout=False) == PublishLayout(UID)


def test_the_source_starts_once_the_target_listens() -> None:
    step = source_step(READY)
    assert isinstance(step, StartSource)
    assert step.target == MigrationEndpoint("127.0.0.1", 4444)
    assert step.state.start_timestamp == NOW


def test_an_earlier_migrations_end_does_not_end_this_one() -> None:
    earlier = MigrationProgress(MigrationStatus.FAILED, error="the last one failed")
    assert isinstance(source_step(READY, earlier), StartSource)


def test_a_running_migration_publishes_its_progress() -> None:
    moving = MigrationProgress(MigrationStatus.ACTIVE, transferred_bytes=5, total_bytes=10)
    assert source_step(READY.model_copy(update={"start_timestamp": NOW}), moving) == ReportProgress(moving)


def test_a_migrated_machine_reports_completion_with_qemus_downtime() -> None:
    started = READY.model_copy(update={"start_timestamp": NOW})
    done = MigrationProgress(MigrationStatus.COMPLETED, downtime_ms=42, total_time_ms=800)
    step = source_step(started, done, ObservedMachine(name="ns/vm", state=MachineState.MIGRATED))
    assert isinstance(step, ReportMigration)
    assert step.state.completed is True
    assert step.event is not None
    assert (
        step.event[1]
        == "The VirtualMachineInstance migrated to node node02 in 800 ms (guest downtime 42 ms)."
    )
