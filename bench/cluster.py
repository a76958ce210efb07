"""VM start and live-update latency on the multi-process cluster beside ``vmplane serve``: one run.

Both run the simulated hypervisor on this machine, one after the other. The cluster is
``vmplane.cli.dev_cluster.LocalCluster`` (an API server, two controllers, agents node01..node03 as
separate processes, each VM pinned round-robin to a node by nodeSelector); ``vmplane serve`` is one
process. For each of ``--vms`` VMs, in turn:

(a) start: the VM is created and timed until a watch opened beforehand shows its
    ``printableStatus: Running`` (API, VM controller, scheduler, node agent, status back);
(b) live update, under ``LiveUpdate``: a PATCH of ``sockets`` 1 -> 2, timed until the VMI status
    shows ``currentCPUTopology.sockets: 2`` (VM controller, planner, node agent's hotplug).

Run: ``python bench/cluster.py [--vms 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmplane.api.resources import KUBEVIRTS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.cli.dev_cluster import NODES, LocalCluster, read_ready_line
from vmplane.client.config import https_client, read_kubeconfig
from vmplane.client.rest import RestObjectClient
from vmplane.store.base import JsonObject

TIMEOUT = 60.0


def vm(name: str, node: str | None) -> JsonObject:
    spec: JsonObject = {
        "terminationGracePeriodSeconds": 0,
        "domain": {
            "cpu": {"sockets": 1, "cores": 1, "threads": 1, "maxSockets": 4},
            "memory": {"guest": "1Gi"},
            "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
        },
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}}],
    }
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": spec}},
    }


class Watcher:
    """Records when each object of one resource first satisfies a predicate (a watch from a list)."""

    def __init__(self, client: RestObjectClient, resource: str, predicate: Callable[[JsonObject], bool]):
        self._client, self._resource, self._predicate = client, resource, predicate
        self.seen: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self._client.list(self._resource, "default")
        self._task = asyncio.create_task(self._run(listed.resource_version))

    async def _run(self, since: int) -> None:
        while True:
            async for event in self._client.watch(self._resource, "default", since=since):
                since = max(since, event.resource_version)
                name = event.object.get("metadata", {}).get("name")
                if (
                    name
                    and name not in self.seen
                    and event.type != "DELETED"
                    and self._predicate(event.object)
                ):
                    self.seen[name] = time.monotonic()
                    self._changed.set()

    async def wait(self, name: str) -> float:
        deadline = time.monotonic() + TIMEOUT
        while name not in self.seen:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))
        return self.seen[name]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _running(vm_obj: JsonObject) -> bool:
    return (vm_obj.get("status") or {}).get("printableStatus") == "Running"


def _two_sockets(vmi: JsonObject) -> bool:
    return ((vmi.get("status") or {}).get("currentCPUTopology") or {}).get("sockets") == 2


async def measure(
    kubeconfig: Path, count: int, nodes: tuple[str, ...] | None
) -> tuple[list[float], list[float]]:
    client = https_client(read_kubeconfig(kubeconfig))
    try:
        await client.patch(
            KUBEVIRTS,
            "kubevirt",
            "kubevirt",
            {"spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}}},
        )
        vms, vmis = (
            Watcher(client, VIRTUAL_MACHINES, _running),
            Watcher(client, VIRTUAL_MACHINE_INSTANCES, _two_sockets),
        )
        await vms.start()
        await vmis.start()
        starts, updates = [], []
        for index in range(count):
            name = f"bench-{index}"
            sent = time.monotonic()
            await client.create(VIRTUAL_MACHINES, vm(name, nodes[index % len(nodes)] if nodes else None))
            starts.append(await vms.wait(name) - sent)
            sent = time.monotonic()
            patch = {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}}
            await client.patch(VIRTUAL_MACHINES, "default", name, patch)
            updates.append(await vmis.wait(name) - sent)
        await vms.stop()
        await vmis.stop()
        return starts, updates
    finally:
        await client.close()


def start_serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "vmplane.cli.main", "serve", "--data-dir", str(data_dir)),
            *("--listen", "127.0.0.1:0", "--hypervisor", "simulated"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    return process, Path(read_ready_line(process).split("kubeconfig:", 1)[1].strip())


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def row(label: str, values: list[float]) -> str:
    return f"{label:<44}{percentile(values, 50) * 1000:>9.1f} ms{percentile(values, 99) * 1000:>9.1f} ms"


def _ready(node: JsonObject) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _wait_nodes(kubeconfig: Path, names: tuple[str, ...]) -> None:
    client = https_client(read_kubeconfig(kubeconfig))
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            nodes = (await client.list("nodes")).items
            ready = {
                n["metadata"]["name"]
                for n in nodes
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            if ready >= set(names):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("the agents did not register within 60 s")
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=30)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-") as tmp:
        serve, kubeconfig = start_serve(Path(tmp) / "serve")
        try:
            asyncio.run(_wait_nodes(kubeconfig, ("node01",)))
            results["serve"] = asyncio.run(measure(kubeconfig, args.vms, None))
        finally:
            stop(serve)
        cluster = LocalCluster(root=Path(tmp) / "cluster")
        try:
            kubeconfig = cluster.start()
            asyncio.run(_wait_nodes(kubeconfig, NODES))
            results["cluster"] = asyncio.run(measure(kubeconfig, args.vms, NODES))
        finally:
            cluster.stop_all()
    print(f"{args.vms} VMs each, simulated hypervisor, one after another                p50        p99")
    for name, label in (
        ("serve", "vmplane serve (one process)"),
        ("cluster", "multi-process (3 agents, 2 controllers)"),
    ):
        starts, updates = results[name]
        print(label)
        print(row("  VM create -> printableStatus Running", starts))
        print(row("  PATCH sockets -> VMI currentCPUTopology", updates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
