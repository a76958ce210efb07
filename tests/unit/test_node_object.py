"""The Node the agent registers: what kubectl describe node and the Kubernetes clients read."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import platform
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from vmplane.agent.node import (
    KUBELET_VERSION,
    HostFacts,
    NodeRegistration,
    host_facts,
    lease_object,
    node_object,
    register_node,
    renew_heartbeat,
    renew_lease,
)
from vmplane.api.resources import LEASES, NODES
from vmplane.api.scheduling import Taint
from vmplane.testing.clock import START, run_in_virtual_time
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient

FACTS = HostFacts(
    hostname="host-a",
    internal_ip="10.0.0.5",
    cpus=4,
    memory_kib=8 * 1024 * 1024,
    machine_id="0123456789abcdef0123456789abcdef",
    system_uuid="01234567-89ab-cdef-0123-456789abcdef",
    boot_id="b0075eed-0000-4000-8000-000000000001",
    kernel_version="6.1.0-13-amd64",
    os_image="Debian GNU/Linux 12 (bookworm)",
    architecture="amd64",
    container_runtime_version="qemu://7.2.22",
)
NODE_INFO_FIELDS = (
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
)


def _node(now: str = "2026-11-28T10:00:00Z", **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"name": "node01", "labels": {}, "taints": (), "facts": FACTS, "now": now}
    arguments.update(overrides)
    return node_object(**arguments)


def test_the_node_has_its_internal_ip_and_hostname_addresses() -> None:
    assert _node()["status"]["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "node01"},
    ]


def test_capacity_is_the_hosts_cpus_and_memory() -> None:
    assert _node()["status"]["capacity"] == {"cpu": "4", "memory": "8388608Ki"}


def test_allocatable_is_capacity_minus_the_reserve() -> None:
    allocatable = _node()["status"]["allocatable"]
    assert allocatable == {"cpu": "3900m", "memory": f"{8388608 - 262144}Ki"}


def test_allocatable_never_goes_below_zero() -> None:
    allocatable = _node(capacity={"cpu": "0", "memory": "1024Ki"})["status"]["allocatable"]
    assert allocatable == {"cpu": "0m", "memory": "0Ki"}


def test_node_info_carries_every_field_the_kubernetes_client_requires() -> None:
    info = _node()["status"]["nodeInfo"]
    assert {field: info[field] for field in NODE_INFO_FIELDS} == {
        "machineID": FACTS.machine_id,
        "systemUUID": FACTS.system_uuid,
        "bootID": FACTS.boot_id,
        "kernelVersion": "6.1.0-13-amd64",
        "osImage": "Debian GNU/Linux 12 (bookworm)",
        "containerRuntimeVersion": "qemu://7.2.22",
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


def test_the_node_is_ready_and_reports_no_pressure() -> None:
    conditions = {c["type"]: c["status"] for c in _node()["status"]["conditions"]}
    assert conditions == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "Ready": "True",
    }


def test_taints_go_to_the_spec() -> None:
    node = _node(taints=(Taint("dedicated", "gpu", "NoSchedule"),))
    assert node["spec"] == {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}


def test_host_facts_read_this_host() -> None:
    facts = host_facts(runtime_version="qemu://7.2.22")
    assert (facts.cpus, facts.kernel_version, facts.hostname) == (
        os.cpu_count(),
        platform.release(),
        socket.gethostname(),
    )
    assert facts.memory_kib == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    assert facts.machine_id == Path("/etc/machine-id").read_text().strip()
    assert facts.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert len(facts.system_uuid) == 36
    assert facts.os_image != ""
    assert ipaddress.ip_address(facts.internal_ip).version == 4


def test_a_renewed_heartbeat_keeps_the_transition_time_of_an_unchanged_condition() -> None:
    stored = _node(now="2026-11-28T10:00:00Z")
    status = renew_heartbeat(stored, _node(now="2026-11-28T10:00:10Z"))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["lastHeartbeatTime"], ready["lastTransitionTime"]) == (
        "2026-11-28T10:00:10Z",
        "2026-11-28T10:00:00Z",
    )


def test_a_renewed_heartbeat_moves_the_transition_time_of_a_changed_condition() -> None:
    stored = _node(now="2026-11-28T10:00:00Z")
    for condition in stored["status"]["conditions"]:
        condition["status"] = "Unknown"
    status = renew_heartbeat(stored, _node(now="2026-11-28T10:00:10Z"))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-11-28T10:00:10Z"


def test_the_node_lease_is_held_by_the_node_and_owned_by_it() -> None:
    node = {**_node(), "metadata": {"name": "node01", "uid": "u-1"}}
    lease = lease_object(node=node, renew_time="2026-11-28T10:00:00.000000Z")
    assert (lease["metadata"]["namespace"], lease["metadata"]["name"]) == ("kube-node-lease", "node01")
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node01", "uid": "u-1"}
    ]
    assert lease["spec"] == {
        "holderIdentity": "node01",
        "leaseDurationSeconds": 40,
        "renewTime": "2026-11-28T10:00:00.000000Z",
    }


def _registration(store: MemoryStore, clock: Callable[[], datetime]) -> NodeRegistration:
    return NodeRegistration(
        client=StoreObjectClient(store),
        name="node01",
        build=lambda: _node(now=clock().strftime("%Y-%m-%dT%H:%M:%SZ")),
        heartbeat_interval=10.0,
        clock=clock,
    )


def test_the_registration_renews_the_node_lease_every_interval() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()

        def clock() -> datetime:
            return START + timedelta(seconds=loop.time())

        store = MemoryStore(clock=clock)
        registration = _registration(store, clock)
        await registration.start()
        seen = []
        try:
            for _ in range(2):
                await asyncio.sleep(0.5)
                lease = await store.get(LEASES, "kube-node-lease", "node01")
                seen.append(lease["spec"]["renewTime"][:19])
                await asyncio.sleep(10)
        finally:
            await registration.stop()
        return seen

    assert run_in_virtual_time(scenario()) == ["2026-11-28T10:00:00", "2026-11-28T10:00:10"]


def test_the_lease_is_renewed_every_ten_seconds_however_seldom_the_status_is() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()

        def clock() -> datetime:
            return START + timedelta(seconds=loop.time())

        store = MemoryStore(clock=clock)
        registration = NodeRegistration(
            client=StoreObjectClient(store),
            name="node01",
            build=lambda: _node(now=clock().strftime("%Y-%m-%dT%H:%M:%SZ")),
            heartbeat_interval=3600.0,
            clock=clock,
        )
        await registration.start()
        leases, heartbeats = [], []
        try:
            for _ in range(3):
                await asyncio.sleep(0.5)
                lease = await store.get(LEASES, "kube-node-lease", "node01")
                leases.append(lease["spec"]["renewTime"][:19])
                node = await store.get(NODES, "", "node01")
                ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
                heartbeats.append(ready["lastHeartbeatTime"])
                await asyncio.sleep(9.5)
        finally:
            await registration.stop()
        return leases, heartbeats

    leases, heartbeats = run_in_virtual_time(scenario())
    assert leases == ["2026-11-28T10:00:00", "2026-11-28T10:00:10", "2026-11-28T10:00:20"]
    assert len(set(heartbeats)) == 1


def test_the_registration_renews_the_heartbeat_every_interval() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()

        def clock() -> datetime:
            return START + timedelta(seconds=loop.time())

        store = MemoryStore(clock=clock)
        registration = _registration(store, clock)
        await registration.start()
        seen = []
        try:
            for _ in range(3):
                node = await store.get(NODES, "", "node01")
                ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
                seen.append(ready["lastHeartbeatTime"])
                await asyncio.sleep(10.5)
        finally:
            await registration.stop()
        return seen

    assert run_in_virtual_time(scenario()) == [
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:10Z",
        "2026-11-28T10:00:20Z",
    ]


def test_a_heartbeat_over_a_malformed_stored_status_writes_the_fresh_one() -> None:
    fresh = _node(now="2026-11-28T10:00:10Z")
    assert renew_heartbeat({"status": {"conditions": 7}}, fresh) == fresh["status"]


def test_a_renewed_lease_takes_the_owner_of_a_node_registered_again() -> None:
    async def scenario() -> list[dict[str, str]]:
        store = MemoryStore()
        first = {**_node(), "metadata": {"name": "node01", "uid": "old"}}
        again = {**_node(), "metadata": {"name": "node01", "uid": "new"}}
        await renew_lease(store, lease_object(node=first, renew_time="2026-11-28T10:00:00.000000Z"))
        await renew_lease(store, lease_object(node=again, renew_time="2026-11-28T10:00:10.000000Z"))
        lease = await store.get(LEASES, "kube-node-lease", "node01")
        owners: list[dict[str, str]] = lease["metadata"]["ownerReferences"]
        return owners

    assert run_in_virtual_time(scenario()) == [
        {"apiVersion": "v1", "kind": "Node", "name": "node01", "uid": "new"}
    ]


def test_allocatable_is_computed_from_any_quantity() -> None:
    allocatable = _node(capacity={"cpu": "4", "memory": "8Gi"})["status"]["allocatable"]
    assert allocatable == {"cpu": "3900m", "memory": f"{8388608 - 262144}Ki"}


class RacingClient(StoreObjectClient):
    """Another writer (the node lifecycle controller) changes the Node just before the agent's first
    update of it."""

    raced = False

    async def update(
        self, resource: str, obj: dict[str, Any], *, subresource: Literal["", "status", "finalize"] = ""
    ) -> dict[str, Any]:
        if resource == NODES and not self.raced:
            self.raced = True
            current = await self.store.get(NODES, "", obj["metadata"]["name"])
            taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
            await self.store.update(NODES, {**current, "spec": {**current["spec"], "taints": [taint]}})
        return await super().update(resource, obj, subresource=subresource)


def test_a_restarted_agent_registers_although_the_node_changes_under_it() -> None:
    async def scenario() -> dict[str, Any]:
        store = MemoryStore()
        await store.create(NODES, _node())
        await register_node(RacingClient(store), _node(labels={"restarted": "yes"}))
        return await store.get(NODES, "", "node01")

    node = run_in_virtual_time(scenario())
    assert node["metadata"]["labels"]["restarted"] == "yes"
