"""Nodes in one process: the controllers, the scheduler and node agents on simulated hosts (4 CPUs,
8 GiB each) over a real SqliteStore, with waits on store watches (deadlines everywhere).

``running_cluster`` starts the control plane and the given nodes and stops all of it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmplane.agent.agent import NodeAgent
from vmplane.agent.machine import machine_name
from vmplane.api.resources import VIRTUAL_MACHINES
from vmplane.controller.manager import ControllerManager
from vmplane.controller.node_health import HealthConfig
from vmplane.host.paths import HostPaths
from vmplane.hypervisor.base import Hypervisor, MachineState, OnChange
from vmplane.hypervisor.simulated import SimulatedHost, SimulatedHypervisor
from vmplane.reconcile.events import EventRecorder
from vmplane.scheduler.migration import MigrationController
from vmplane.scheduler.scheduler import Scheduler
from vmplane.store.base import ConflictError, JsonObject, NotFoundError, Store
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


@contextlib.asynccontextmanager
async def running_cluster(
    tmp_path: Path, nodes: Sequence[str] = ("node01", "node02"), *, health: HealthConfig = HEALTH
) -> AsyncIterator[Cluster]:
    store = SqliteStore.open(tmp_path / "store.db")
    c = Cluster(store=store, tmp=tmp_path)
    client = StoreObjectClient(store)
    events = EventRecorder(client, component="virt-controller", clock=utc_now)
    manager = ControllerManager(
        client=client, events=events, clock=utc_now, crash_backoff=0.2, node_health=health
    )
    scheduler = Scheduler(client=client, clock=utc_now)
    migrations = MigrationController(client=client, events=events, clock=utc_now)
    await manager.start()
    await scheduler.start()
    await migrations.start()
    try:
        for node in nodes:
            await c.start_agent(node)
        yield c
    finally:
        for agent in c.agents.values():
            await agent.stop()
        await migrations.stop()
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


async def edit_vm(store: Store, change: Callable[[JsonObject], None], name: str = VM) -> None:
    """Change the VM as a user does: read, change, update, and again on a conflict (the controllers
    write its status meanwhile)."""
    while True:
        vm = await store.get(VIRTUAL_MACHINES, NS, name)
        change(vm)
        try:
            await store.update(VIRTUAL_MACHINES, vm)
        except ConflictError:
            continue
        return
