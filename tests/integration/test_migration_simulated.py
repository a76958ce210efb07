"""Live migration between two node agents on simulated hosts, in one process over a real SqliteStore.

The guest really crosses a TCP connection from node01's driver to node02's (``simulated_migration``);
its boot number proves it was not started again. A target that refuses the guest fails the migration
and the guest runs on at its source; deleting a migration in flight cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nodes_support import NS, VM, Cluster, create_vm, running_cluster, running_on, status

from vmplane.agent.machine import machine_name
from vmplane.api.resources import (
    EVENTS,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
)
from vmplane.hypervisor.base import MachineState
from vmplane.hypervisor.simulated import SimulatedHypervisor
from vmplane.store.base import JsonObject, NotFoundError

GUEST = machine_name(NS, VM)


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as c:
        yield c


def driver(cluster: Cluster, node: str) -> SimulatedHypervisor:
    hypervisor = cluster.agents[node].hypervisor
    assert isinstance(hypervisor, SimulatedHypervisor)
    return hypervisor


async def start_on_node01(cluster: Cluster) -> JsonObject:
    """The VM running on node01 (node02 cordoned while it starts)."""
    await cordon(cluster, "node02", True)
    await create_vm(cluster.store)
    vmi = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node01"))
    await cordon(cluster, "node02", False)
    assert vmi is not None
    return vmi


async def cordon(cluster: Cluster, node: str, unschedulable: bool) -> None:
    for _ in range(20):
        obj = await cluster.store.get("nodes", "", node)
        obj["spec"] = {**(obj.get("spec") or {}), "unschedulable": unschedulable}
        try:
            await cluster.store.update("nodes", obj)
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError(f"could not cordon {node}")


async def migrate(cluster: Cluster, name: str = "move") -> None:
    await cluster.store.create(
        VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"vmiName": VM},
        },
    )


async def gone_from(cluster: Cluster, node: str) -> None:
    """Wait until ``node``'s host has forgotten the guest (``forget`` tells no listener: polled)."""
    async with asyncio.timeout(10):
        while GUEST in cluster.hosts[node].machines:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def phase_is(*phases: str) -> Any:
    return lambda m: status(m).get("phase") in phases


def migration_state(vmi: JsonObject | None) -> dict[str, Any]:
    return status(vmi).get("migrationState") or {}


async def recorded(cluster: Cluster, reason: str) -> bool:
    """Whether an event of ``reason`` is recorded within the deadline (recorders write in the back)."""
    async with asyncio.timeout(10):
        while True:
            listed = await cluster.store.list(EVENTS, NS)
            if any(e.get("reason") == reason for e in listed.items):
                return True
            await asyncio.sleep(0.05)


async def test_a_migrated_guest_runs_on_the_target_without_a_new_boot(cluster: Cluster) -> None:
    first = await start_on_node01(cluster)
    boot = driver(cluster, "node01").boot_of(GUEST)

    await migrate(cluster)
    done = await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, "move", phase_is("Succeeded", "Failed"))
    assert status(done)["phase"] == "Succeeded", status(done)

    vmi = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node02"))
    assert vmi is not None
    assert vmi["metadata"]["uid"] == first["metadata"]["uid"]
    assert driver(cluster, "node02").boot_of(GUEST) == boot
    state = migration_state(vmi)
    assert (state["sourceNode"], state["targetNode"], state["completed"]) == ("node01", "node02", True)
    assert state["migrationUid"] == done["metadata"]["uid"]
    assert state["startTimestamp"]
    assert state["endTimestamp"]
    assert state["targetNodeDomainDetected"] is True


async def test_the_source_forgets_its_machine_once_the_target_runs_the_guest(cluster: Cluster) -> None:
    await start_on_node01(cluster)
    await migrate(cluster)
    await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node02"))
    await gone_from(cluster, "node01")
    assert cluster.hosts["node02"].machines[GUEST].state is MachineState.RUNNING


async def test_the_migration_passes_through_upstreams_phases_in_order(cluster: Cluster) -> None:
    await start_on_node01(cluster)
    await migrate(cluster)
    done = await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, "move", phase_is("Succeeded", "Failed"))
    phases = [p["phase"] for p in status(done)["phaseTransitionTimestamps"]]
    order = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
    assert [p for p in order if p in phases] == phases
    assert (phases[0], phases[-1]) == ("Pending", "Succeeded")
    assert await recorded(cluster, "SuccessfulMigration")
    assert await recorded(cluster, "Migrated")


async def test_a_live_change_made_before_the_migration_is_kept_on_the_target(cluster: Cluster) -> None:
    await cluster.store.create(
        "kubevirts.kubevirt.io",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}},
        },
    )
    await start_on_node01(cluster)
    vm = await cluster.store.get(VIRTUAL_MACHINES, NS, VM)
    vm["spec"]["template"]["spec"]["domain"]["cpu"]["sockets"] = 2
    await cluster.store.update(VIRTUAL_MACHINES, vm)
    await cluster.wait(
        VIRTUAL_MACHINE_INSTANCES,
        VM,
        lambda v: (status(v).get("currentCPUTopology") or {}).get("sockets") == 2,
    )
    await migrate(cluster)
    await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node02"))
    observed = await driver(cluster, "node02").observe(GUEST)
    assert observed.sockets == 2


async def test_a_target_that_refuses_the_guest_fails_the_migration_and_it_runs_on(cluster: Cluster) -> None:
    await start_on_node01(cluster)
    boot = driver(cluster, "node01").boot_of(GUEST)
    driver(cluster, "node02").refuse_incoming_guests()

    await migrate(cluster)
    done = await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, "move", phase_is("Succeeded", "Failed"))
    assert status(done)["phase"] == "Failed"
    vmi = await cluster.store.get(VIRTUAL_MACHINE_INSTANCES, NS, VM)
    state = migration_state(vmi)
    assert state["failed"] is True
    assert "refused" in state["failureReason"]
    assert (status(vmi)["nodeName"], status(vmi)["phase"]) == ("node01", "Running")
    assert driver(cluster, "node01").boot_of(GUEST) == boot
    assert await recorded(cluster, "FailedMigration")
    await gone_from(cluster, "node02")


async def test_deleting_a_migration_in_flight_cancels_it_and_the_object_goes(cluster: Cluster) -> None:
    await start_on_node01(cluster)
    driver(cluster, "node01").slow_migrations(30)
    await migrate(cluster)
    await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, "move", phase_is("Running"))
    await cluster.store.delete(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, NS, "move")

    await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, "move", lambda m: m is None)
    vmi = await cluster.wait(
        VIRTUAL_MACHINE_INSTANCES, VM, lambda v: migration_state(v).get("failed") is True
    )
    state = migration_state(vmi)
    assert (state["abortRequested"], state["abortStatus"]) == (True, "Succeeded")
    assert (status(vmi)["nodeName"], status(vmi)["phase"]) == ("node01", "Running")
    with pytest.raises(NotFoundError):
        await cluster.store.get(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, NS, "move")
