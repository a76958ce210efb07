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
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from vmplane.agent.agent import NodeAgent
from vmplane.agent.machine import machine_name
from vmplane.api.resources import KUBEVIRTS, NODES, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.controller.manager import ControllerManager
from vmplane.controller.node_health import HealthConfig
from vmplane.host.paths import HostPaths
from vmplane.hypervisor.base import Hypervisor, MachineState, OnChange
from vmplane.hypervisor.simulated import SimulatedHost, SimulatedHypervisor
from vmplane.reconcile.events import EventRecorder
from vmplane.scheduler.scheduler import Scheduler
from vmplane.store.base import JsonObject, NotFoundError, Store
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.builders import container_disk, disk, interface, network, vm_spec
from vmplane.testing.store_client import StoreObjectClient

NS = "default"
VM = "web"
HEALTH = HealthConfig(grace_period=2.0, fence_timeout=1.0, fence_margin=0.5)
DEADLINE = 10.0
Predicate = Callable[[JsonObject | None], bool]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Cluster:
    store: Store
    tmp: Path
    hosts: dict[str, SimulatedHost] = field(default_factory=dict)
    agents: dict[str, NodeAgent] = field(default_factory=dict)
    #: (monotonic time, number of live guests of the VM across hosts) at every hypervisor change.
    live_counts: list[tuple[float, int]] = field(default_factory=list)

    def _live_guests(self) -> int:
        name = machine_name(NS, VM)
        return sum(
            1
            for host in self.hosts.values()
            if name in host.machines
            and host.machines[name].state in (MachineState.STARTING, MachineState.RUNNING)
        )

    def _record(self, _machine: str) -> None:
        self.live_counts.append((time.monotonic(), self._live_guests()))

    async def start_agent(self, node: str) -> NodeAgent:
        host = self.hosts.setdefault(node, SimulatedHost())
        if self._record not in host.listeners:
            host.listeners.append(self._record)

        def driver(on_change: OnChange) -> Hypervisor:
            return SimulatedHypervisor(on_change=on_change, host=host, latency=0.01)

        agent = NodeAgent(
            client=StoreObjectClient(self.store),
            hypervisor=driver,
            node_name=node,
            clock=utc_now,
            resolver=HostPaths(self.tmp / node),
            capacity={"cpu": "4", "memory": "8Gi"},
            heartbeat_interval=0.2,
            fence_timeout=HEALTH.fence_timeout,
        )
        await agent.start()
        self.agents[node] = agent
        return agent

    async def wait(
        self, resource: str, name: str, predicate: Predicate, *, ns: str = NS
    ) -> JsonObject | None:
        async with asyncio.timeout(DEADLINE):
            while True:
                since = await self.store.current_revision()
                try:
                    current: JsonObject | None = await self.store.get(resource, ns, name)
                except NotFoundError:
                    current = None
                if predicate(current):
                    return current
                events = self.store.watch(resource, ns or None, since=since)
                async with contextlib.aclosing(events):  # type: ignore[type-var]
                    async for event in events:
                        if event.object["metadata"]["name"] != name:
                            continue
                        current = None if event.type == "DELETED" else event.object
                        if predicate(current):
                            return current


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = SqliteStore.open(tmp_path / "store.db")
    c = Cluster(store=store, tmp=tmp_path)
    client = StoreObjectClient(store)
    events = EventRecorder(client, component="virt-controller", clock=utc_now)
    manager = ControllerManager(
        client=client, events=events, clock=utc_now, crash_backoff=0.2, node_health=HEALTH
    )
    scheduler = Scheduler(client=client, clock=utc_now)
    await manager.start()
    await scheduler.start()
    for node in ("node01", "node02"):
        await c.start_agent(node)
    try:
        yield c
    finally:
        for agent in c.agents.values():
            await agent.stop()
        await scheduler.stop()
        await manager.stop()
        await store.close()


def status(obj: JsonObject | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def ready_status(node: JsonObject | None) -> str | None:
    return next((c["status"] for c in status(node).get("conditions") or () if c["type"] == "Ready"), None)


def taints(node: JsonObject | None) -> list[tuple[str, str]]:
    return [(t["key"], t["effect"]) for t in ((node or {}).get("spec") or {}).get("taints") or ()]


def running_on(node: str) -> Predicate:
    return lambda vmi: status(vmi).get("phase") == "Running" and status(vmi).get("nodeName") == node


def given_up(vmi: JsonObject | None) -> bool:
    """The VMI version the node lifecycle controller wrote (every version reaches a store watch)."""
    return status(vmi).get("reason") == "NodeUnreachable"


async def create_vm(store: Store, name: str = VM, *, guest: str = "1Gi") -> None:
    template = vm_spec(
        sockets=1,
        guest=guest,
        disks=[disk("root")],
        volumes=[container_disk("root")],
        interfaces=[interface("default", binding="masquerade")],
        networks=[network("default")],
        termination_grace_period_seconds=0,
    )
    await store.create(
        VIRTUAL_MACHINES,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": "Always", "template": {"spec": template.to_wire()}},
        },
    )


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
    vm = await cluster.store.get(VIRTUAL_MACHINES, NS, VM)
    vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "8Gi"
    await cluster.store.update(VIRTUAL_MACHINES, vm)

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
