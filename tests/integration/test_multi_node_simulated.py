"""Two nodes in one process: the controllers, the scheduler and two node agents on simulated hosts
(4 CPUs, 8 GiB each) over a real SqliteStore.

Capacity: equal nodes are filled evenly, and a live memory hotplug the VMI's node cannot hold is
pending ``InsufficientNodeResources``.

Node failure, with the timing shortened (2 s grace period, 1 s fence timeout, Lease renewed every
0.2 s): node01's agent stops renewing its Lease; the tests check the guarantee of README "Node
failure and fencing": its guest is stopped before its VMI fails, the VMI fails only past the
fencing deadline, the VM runs again on node02, and no two guests of the VM ever run at once.

Every wait is on a store watch with a deadline; one fixed sleep checks that nothing is given up
before the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nodes_support import (
    HEALTH,
    NS,
    VM,
    Cluster,
    create_vm,
    edit_vm,
    given_up,
    ready_status,
    running_cluster,
    running_on,
    status,
    taints,
)

from vmplane.agent.machine import machine_name
from vmplane.api.resources import KUBEVIRTS, NODES, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.hypervisor.base import MachineState
from vmplane.store.base import JsonObject


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as c:
        yield c


async def test_a_lost_node_is_fenced_and_its_vm_runs_again_elsewhere_never_twice(cluster: Cluster) -> None:
    await create_vm(cluster.store)
    first = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node01"))
    assert first is not None
    guest = machine_name(NS, VM)

    # node01 loses its API connection: its Lease goes unrenewed from now on.
    lost_at = time.monotonic()
    await cluster.agents["node01"].registration.stop()

    node = await cluster.wait(NODES, "node01", lambda n: ready_status(n) == "Unknown", ns="")
    unknown_at = time.monotonic()
    assert ("node.kubernetes.io/unreachable", "NoSchedule") in taints(node)
    assert ("node.kubernetes.io/unreachable", "NoExecute") in taints(node)
    reasons = {c["reason"] for c in status(node)["conditions"]}
    assert reasons == {"NodeStatusUnknown"}
    # The agent fenced its guest on its own, before the controller gave the VMI up.
    assert cluster.hosts["node01"].machines[guest].state is MachineState.STOPPED
    assert unknown_at - lost_at >= HEALTH.grace_period - 0.3  # the last renewal was up to 0.2 s earlier

    failed = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, given_up)
    assert failed is not None
    assert (failed["metadata"]["uid"], status(failed)["phase"]) == (first["metadata"]["uid"], "Failed")
    replacement = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node02"))
    assert replacement is not None
    assert replacement["metadata"]["uid"] != first["metadata"]["uid"]
    assert max(count for _, count in cluster.live_counts) == 1

    # node01 comes back (its agent restarted): it renews again, is Ready and loses the taints.
    await cluster.agents["node01"].stop()
    await cluster.start_agent("node01")
    node = await cluster.wait(NODES, "node01", lambda n: ready_status(n) == "True" and not taints(n), ns="")
    assert node is not None
    assert max(count for _, count in cluster.live_counts) == 1


async def test_a_vmi_of_a_lost_node_fails_only_after_the_fencing_deadline(cluster: Cluster) -> None:
    await create_vm(cluster.store)
    first = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node01"))
    assert first is not None
    await cluster.agents["node01"].registration.stop()

    # Past the fence timeout but before the deadline: the guest is stopped, and the VMI still
    # stands as the agent last wrote it (a fenced agent writes nothing; nobody gave it up yet).
    await asyncio.sleep(HEALTH.fencing_deadline - 0.5)
    assert cluster.hosts["node01"].machines[machine_name(NS, VM)].state is MachineState.STOPPED
    current = await cluster.store.get(VIRTUAL_MACHINE_INSTANCES, NS, VM)
    assert current["metadata"]["uid"] == first["metadata"]["uid"]
    assert running_on("node01")(current)

    failed = await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, given_up)
    assert failed is not None
    assert failed["metadata"]["uid"] == first["metadata"]["uid"]


async def test_equal_nodes_are_filled_evenly(cluster: Cluster) -> None:
    for name in ("a", "b"):
        await create_vm(cluster.store, name)
    nodes = set()
    for name in ("a", "b"):
        vmi = await cluster.wait(
            VIRTUAL_MACHINE_INSTANCES, name, lambda v: status(v).get("phase") == "Running"
        )
        nodes.add(status(vmi)["nodeName"])
    assert nodes == {"node01", "node02"}


async def test_a_memory_hotplug_the_node_cannot_hold_is_pending_insufficient_node_resources(
    cluster: Cluster,
) -> None:
    await cluster.store.create(
        KUBEVIRTS,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}},
        },
    )
    await create_vm(cluster.store, guest="2Gi")  # maxGuest 8Gi; the node has 7.75Gi allocatable
    await cluster.wait(VIRTUAL_MACHINE_INSTANCES, VM, running_on("node01"))

    def grow(vm: JsonObject) -> None:
        vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "8Gi"

    await edit_vm(cluster.store, grow)

    def pending_reasons(obj: JsonObject | None) -> list[str]:
        return [p["reason"] for p in status(obj).get("pendingChanges") or ()]

    vm = await cluster.wait(
        VIRTUAL_MACHINES, VM, lambda v: pending_reasons(v) == ["InsufficientNodeResources"]
    )
    change = status(vm)["pendingChanges"][0]
    assert (change["path"], change["running"], change["desired"]) == (
        "spec.template.spec.domain.memory.guest",
        "2Gi",
        "8Gi",
    )
    assert "Insufficient memory" in change["message"]
    vmi = await cluster.store.get(VIRTUAL_MACHINE_INSTANCES, NS, VM)
    assert vmi["spec"]["domain"]["memory"]["guest"] == "2Gi"  # nothing was hot-plugged
