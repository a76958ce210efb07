"""Placement changes that take effect, on simulated hosts in one process over a real SqliteStore.

Under LiveUpdate the VM's nodeSelector moves to node02 while its guest runs on node01. Without the
opt-in the VM reports it (a pending change, ``PlacementViolated``) and the guest stays; with
``vmplane.io/migrate-on-placement-change: "true"`` on the VM or the KubeVirt object, or a migration
asked for on demand, the same guest (same VMI uid) moves to node02 and the report goes. Reverting
the placement clears the report, and withdraws a placement migration still looking for a target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from nodes_support import NS, VM, Cluster, running_cluster, running_on, status
from test_migration_simulated import migrate, start_on_node01

from vmplane.api.resources import KUBEVIRTS, VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, VIRTUAL_MACHINES
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES as VMIS
from vmplane.store.base import ConflictError, JsonObject

OPT_IN = {"vmplane.io/migrate-on-placement-change": "true"}
ON_NODE02 = {"kubernetes.io/hostname": "node02"}
REASON = "PlacementViolatedByCurrentNode"


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as c:
        yield c


async def live_update(cluster: Cluster, annotations: dict[str, str] | None = None) -> None:
    await cluster.store.create(
        KUBEVIRTS,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt", "annotations": annotations or {}},
            "spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}},
        },
    )


async def select_node02(cluster: Cluster, *, annotations: dict[str, str] | None = None) -> None:
    """Change the VM's nodeSelector to node02's hostname label (and add ``annotations``)."""
    for _ in range(20):
        vm = await cluster.store.get(VIRTUAL_MACHINES, NS, VM)
        vm["metadata"]["annotations"] = {**(vm["metadata"].get("annotations") or {}), **(annotations or {})}
        vm["spec"]["template"]["spec"]["nodeSelector"] = ON_NODE02
        try:
            await cluster.store.update(VIRTUAL_MACHINES, vm)
            return
        except ConflictError:
            continue
    raise AssertionError("could not update the VM")


async def revert_placement(cluster: Cluster) -> None:
    for _ in range(20):
        vm = await cluster.store.get(VIRTUAL_MACHINES, NS, VM)
        vm["spec"]["template"]["spec"].pop("nodeSelector")
        try:
            await cluster.store.update(VIRTUAL_MACHINES, vm)
            return
        except ConflictError:
            continue
    raise AssertionError("could not update the VM")


def violated(vm: JsonObject | None) -> bool:
    conditions = {c["type"]: c for c in status(vm).get("conditions") or ()}
    placement = conditions.get("PlacementViolated")
    return placement is not None and placement["status"] == "True"


def reported_clean(vm: JsonObject | None) -> bool:
    return not violated(vm) and not status(vm).get("pendingChanges")


def conditions_of(vm: JsonObject | None) -> set[str]:
    return {c["type"] for c in status(vm).get("conditions") or ()}


async def migrations(cluster: Cluster) -> list[dict[str, Any]]:
    return (await cluster.store.list(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, NS)).items


async def moves_to_node02_and_the_report_goes(cluster: Cluster, first: JsonObject) -> None:
    vmi = await cluster.wait(VMIS, VM, running_on("node02"))
    assert vmi is not None
    assert vmi["metadata"]["uid"] == first["metadata"]["uid"]
    vm = await cluster.wait(VIRTUAL_MACHINES, VM, reported_clean)
    assert "PlacementViolated" not in conditions_of(vm)


async def test_without_the_opt_in_the_vm_reports_the_violation_and_the_guest_stays(cluster: Cluster) -> None:
    await live_update(cluster)
    first = await start_on_node01(cluster)
    await select_node02(cluster)

    vm = await cluster.wait(VIRTUAL_MACHINES, VM, violated)
    (change,) = status(vm)["pendingChanges"]
    assert (change["path"], change["reason"], change["running"], change["desired"]) == (
        "spec.template.spec.nodeSelector",
        REASON,
        "node01",
        ON_NODE02,
    )
    assert "takes effect at the next migration" in change["message"]
    assert "RestartRequired" not in conditions_of(vm)
    vmi = await cluster.wait(VMIS, VM, lambda v: (v or {}).get("spec", {}).get("nodeSelector") == ON_NODE02)
    assert vmi is not None
    assert (status(vmi)["nodeName"], vmi["metadata"]["uid"]) == ("node01", first["metadata"]["uid"])
    assert await migrations(cluster) == []


async def test_opted_in_on_the_vm_the_guest_migrates_to_a_conforming_node(cluster: Cluster) -> None:
    await live_update(cluster)
    first = await start_on_node01(cluster)
    await select_node02(cluster, annotations=OPT_IN)

    await moves_to_node02_and_the_report_goes(cluster, first)
    (migration,) = await migrations(cluster)
    assert migration["metadata"]["name"] == f"{VM}-placement-1"
    assert status(migration)["phase"] == "Succeeded"


async def test_opted_in_on_the_kubevirt_object_the_guest_migrates_to_a_conforming_node(
    cluster: Cluster,
) -> None:
    await live_update(cluster, OPT_IN)
    first = await start_on_node01(cluster)
    await select_node02(cluster)

    await moves_to_node02_and_the_report_goes(cluster, first)


async def test_a_migration_on_demand_puts_the_guest_on_a_conforming_node(cluster: Cluster) -> None:
    await live_update(cluster)
    first = await start_on_node01(cluster)
    await select_node02(cluster)
    await cluster.wait(VIRTUAL_MACHINES, VM, violated)

    await migrate(cluster)
    await moves_to_node02_and_the_report_goes(cluster, first)


async def test_reverting_the_placement_clears_the_report_without_a_migration(cluster: Cluster) -> None:
    await live_update(cluster)
    await start_on_node01(cluster)
    await select_node02(cluster)
    await cluster.wait(VIRTUAL_MACHINES, VM, violated)

    await revert_placement(cluster)
    await cluster.wait(VIRTUAL_MACHINES, VM, reported_clean)
    assert await migrations(cluster) == []
    assert status(await cluster.store.get(VMIS, NS, VM))["nodeName"] == "node01"


async def test_reverting_withdraws_a_placement_migration_that_found_no_target(cluster: Cluster) -> None:
    await live_update(cluster)
    await start_on_node01(cluster)
    for _ in range(20):
        vm = await cluster.store.get(VIRTUAL_MACHINES, NS, VM)
        vm["metadata"]["annotations"] = OPT_IN
        vm["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "nowhere"}
        try:
            await cluster.store.update(VIRTUAL_MACHINES, vm)
            break
        except ConflictError:
            continue
    name = f"{VM}-placement-1"
    await cluster.wait(
        VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, name, lambda m: status(m).get("phase") == "Scheduling"
    )

    await revert_placement(cluster)
    await cluster.wait(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, name, lambda m: m is None)
    await cluster.wait(VIRTUAL_MACHINES, VM, reported_clean)
    assert status(await cluster.store.get(VMIS, NS, VM))["nodeName"] == "node01"
