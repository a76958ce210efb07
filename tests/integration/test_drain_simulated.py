"""Draining a node of a simulated cluster, in one process over a real SqliteStore.

``vmplane drain``'s own coroutine runs against the store (through ``StoreObjectClient``): a
``LiveMigrate`` VM leaves the node by a migration the evacuation controller creates (same VMI, same
boot), an ``evictionStrategy: None`` VM with ``runStrategy: Always`` is stopped there and its VM
starts a new VMI elsewhere. The drain taint alone, put on by hand, evacuates as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nodes_support import NS, Cluster, running_cluster, running_on, status, taints

from vmplane.agent.machine import machine_name
from vmplane.api.resources import (
    NODES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
)
from vmplane.cli.drain import drain, uncordon
from vmplane.controller.evacuation_plan import EVACUATION_MIGRATION_ANNOTATION
from vmplane.hypervisor.simulated import SimulatedHypervisor
from vmplane.store.base import ConflictError, JsonObject
from vmplane.testing.builders import container_disk, disk, interface, network, vm_spec
from vmplane.testing.store_client import StoreObjectClient

DRAIN_TAINT = ("kubevirt.io/drain", "NoSchedule")


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as c:
        yield c


async def create_vm(cluster: Cluster, name: str, eviction: str) -> None:
    template = vm_spec(
        sockets=1,
        guest="1Gi",
        disks=[disk("root")],
        volumes=[container_disk("root")],
        interfaces=[interface("default", binding="masquerade")],
        networks=[network("default")],
        termination_grace_period_seconds=0,
    ).to_wire()
    template["evictionStrategy"] = eviction
    await cluster.store.create(
        VIRTUAL_MACHINES,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": "Always", "template": {"spec": template}},
        },
    )


async def edit_node(cluster: Cluster, node: str, spec: JsonObject) -> None:
    """Merge ``spec`` into the node's (its agent writes the node too: retried on conflicts)."""
    for _ in range(20):
        obj = await cluster.store.get(NODES, "", node)
        obj["spec"] = {**(obj.get("spec") or {}), **spec}
        try:
            await cluster.store.update(NODES, obj)
            return
        except ConflictError:
            continue
    raise AssertionError(f"could not edit {node}")


async def start_on_node02(cluster: Cluster, vms: dict[str, str]) -> dict[str, JsonObject]:
    """The VMs (name -> evictionStrategy) running on node02, node01 cordoned while they start."""
    await edit_node(cluster, "node01", {"unschedulable": True})
    for name, eviction in vms.items():
        await create_vm(cluster, name, eviction)
    started = {}
    for name in vms:
        vmi = await cluster.wait(
            VIRTUAL_MACHINE_INSTANCES,
            name,
            lambda v: running_on("node02")(v) and live_migratable(v),
        )
        assert vmi is not None
        started[name] = vmi
    await edit_node(cluster, "node01", {"unschedulable": False})
    return started


def live_migratable(vmi: JsonObject | None) -> bool:
    return any(c["type"] == "LiveMigratable" for c in status(vmi).get("conditions") or ())


def boot_of(cluster: Cluster, node: str, vm: str) -> int:
    hypervisor = cluster.agents[node].hypervisor
    assert isinstance(hypervisor, SimulatedHypervisor)
    return hypervisor.boot_of(machine_name(NS, vm))


async def test_drain_migrates_the_live_migrate_vm_and_restarts_the_other_elsewhere(cluster: Cluster) -> None:
    before = await start_on_node02(cluster, {"mover": "LiveMigrate", "keeper": "None"})
    boot = boot_of(cluster, "node02", "mover")
    lines: list[str] = []

    assert await drain(StoreObjectClient(cluster.store), "node02", timeout=30, say=lines.append), lines

    moved = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, "mover", running_on("node01"))
    assert moved is not None
    assert moved["metadata"]["uid"] == before["mover"]["metadata"]["uid"]
    assert boot_of(cluster, "node01", "mover") == boot
    restarted = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, "keeper", running_on("node01"))
    assert restarted is not None
    assert restarted["metadata"]["uid"] != before["keeper"]["metadata"]["uid"]
    node = await cluster.store.get(NODES, "", "node02")
    assert node["spec"]["unschedulable"] is True
    assert DRAIN_TAINT in taints(node)
    listed = await cluster.store.list(VIRTUAL_MACHINE_INSTANCES, NS)
    assert not [v for v in listed.items if status(v).get("nodeName") == "node02"]
    assert any(line.startswith(f"vmi/{NS}/mover: migrating") for line in lines), lines
    assert any(line.startswith(f"vmi/{NS}/keeper: stopping") for line in lines), lines
    assert lines[-1] == "node/node02 drained"


async def test_uncordon_makes_a_drained_node_schedulable_again(cluster: Cluster) -> None:
    await start_on_node02(cluster, {"keeper": "None"})
    client = StoreObjectClient(cluster.store)
    assert await drain(client, "node02", timeout=30, say=lambda _line: None)

    assert await uncordon(client, "node02", say=lambda _line: None)

    node = await cluster.store.get(NODES, "", "node02")
    assert "unschedulable" not in node["spec"]
    assert DRAIN_TAINT not in taints(node)
    await edit_node(cluster, "node01", {"unschedulable": True})
    await create_vm(cluster, "later", "None")
    assert await cluster.wait(VIRTUAL_MACHINE_INSTANCES, "later", running_on("node02"))


async def test_drain_times_out_while_a_live_migrate_vm_cannot_move(cluster: Cluster) -> None:
    await start_on_node02(cluster, {"mover": "LiveMigrate"})
    await edit_node(cluster, "node01", {"unschedulable": True})  # nowhere to go
    lines: list[str] = []

    assert not await drain(StoreObjectClient(cluster.store), "node02", timeout=2, say=lines.append)

    assert lines[-1].startswith("node/node02: timed out after 2s with 1 VMI(s) left"), lines
    vmi = await cluster.store.get(VIRTUAL_MACHINE_INSTANCES, NS, "mover")
    assert (status(vmi)["nodeName"], status(vmi)["phase"]) == ("node02", "Running")


async def test_the_drain_taint_alone_evacuates_a_live_migrate_vmi(cluster: Cluster) -> None:
    before = await start_on_node02(cluster, {"mover": "LiveMigrate"})
    node = await cluster.store.get(NODES, "", "node02")
    existing = (node.get("spec") or {}).get("taints") or []
    await edit_node(
        cluster, "node02", {"taints": [*existing, {"key": "kubevirt.io/drain", "effect": "NoSchedule"}]}
    )

    moved = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, "mover", running_on("node01"))
    assert moved is not None
    assert moved["metadata"]["uid"] == before["mover"]["metadata"]["uid"]
    migrations = (await cluster.store.list(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, NS)).items
    assert len(migrations) == 1
    [migration] = migrations
    assert migration["metadata"]["name"].startswith("kubevirt-evacuation-")
    assert migration["metadata"]["annotations"][EVACUATION_MIGRATION_ANNOTATION] == "node02"
    assert migration["spec"]["vmiName"] == "mover"
    done = await cluster.wait(
        VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
        migration["metadata"]["name"],
        lambda m: status(m).get("phase") in ("Succeeded", "Failed"),
    )
    assert status(done)["phase"] == "Succeeded"
