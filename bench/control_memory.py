"""Where the control plane's memory goes at N running VMs (issue 13, (d)): tracemalloc, one process.

The store, the controllers, the scheduler and the node agent (simulated hypervisor, zero latency) and
the API with its watch cache (filled by listing the VMs and VMIs once) run in this process; N VMs are
created straight in the store and, once every VMI is Running, the traced growth since before the
creates is printed by file and by allocation site (the innermost vmplane frame). tracemalloc makes
everything several times slower: ``--vms 300`` is enough to attribute the memory.
Exits 1 when the growth exceeds 20 MB per 1,000 VMs (the issue's resident-memory goal).
Run: ``.venv/bin/python bench/control_memory.py [--vms 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from control import MB, VMS, vm_manifest

from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.door import InProcessDoor
from vmplane.apiserver.tokens import single_token
from vmplane.app import ControlPlane, PlaneOptions
from vmplane.reconcile.informer import Informer
from vmplane.store.sqlite import SqliteStore

VMIS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances"


async def all_running(store: SqliteStore, n: int) -> None:
    while True:
        items = (await store.list("virtualmachineinstances.kubevirt.io", "default")).items
        if sum((vmi.get("status") or {}).get("phase") == "Running" for vmi in items) == n:
            return
        del items
        await asyncio.sleep(1)


def print_informers() -> None:
    """Every informer cache in the process: its resource, how many objects, their JSON size."""
    print("informer caches (resource, objects, JSON MB):")
    for informer in (o for o in gc.get_objects() if isinstance(o, Informer)):
        objects = informer.list()
        size = sum(len(json.dumps(o)) for o in objects) / MB
        print(f"  {informer.resource:48} {len(objects):6} {size:7.2f}")


async def measure(n: int, tmp: Path) -> float:
    store = SqliteStore.open(tmp / "store.db")
    await bootstrap(store)
    options = PlaneOptions(data_dir=tmp, hypervisor="simulated", simulated_latency=0.0)
    plane = ControlPlane(store, options)
    door = InProcessDoor()
    app = create_app(
        store=store,
        registry=plane.registry,
        authenticate=door.authenticate(single_token("bench")),
        extra_routes=plane.add_routes,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.runner is not None
    await door.open(server.runner)
    running = asyncio.create_task(plane.run(door))
    try:
        await asyncio.sleep(1)  # the informers' first lists
        gc.collect()
        tracemalloc.start(4)
        before = tracemalloc.take_snapshot()
        for index in range(n):
            await store.create("virtualmachines.kubevirt.io", vm_manifest(f"vm-{index:05d}", 8))
        await all_running(store, n)
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench"}) as session:
            for path in (VMS, VMIS):
                async with session.get(server.make_url(path)) as response:
                    await response.read()
        await asyncio.sleep(2)
        gc.collect()
        after = tracemalloc.take_snapshot()
        print_informers()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await server.close()
        await store.close()
    sites = after.compare_to(before, "traceback")
    growth = sum(stat.size_diff for stat in sites)
    print(f"traced growth for {n} running VMs: {growth / MB:.1f} MB; by file:")
    for stat in after.compare_to(before, "filename")[:10]:
        print(f"  {stat.size_diff / MB:7.2f} MB  {stat.traceback[0].filename}")
    print("by allocation site (innermost vmplane frame, then where the memory was allocated):")
    for stat in sites[:15]:
        ours = [frame for frame in stat.traceback if "vmplane" in frame.filename] or list(stat.traceback)
        frame, inner = ours[-1], stat.traceback[-1]
        where = f"{frame.filename.split('src/')[-1]}:{frame.lineno}"
        print(f"  {stat.size_diff / MB:7.2f} MB  {where}  ({Path(inner.filename).name}:{inner.lineno})")
    return growth / n * 1000 / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-") as tmp:
        per_1000 = asyncio.run(measure(args.vms, Path(tmp)))
    met = per_1000 <= 20
    print(f"traced growth per 1,000 VMs: {per_1000:.1f} MB (goal <= 20 MB) -> {'PASS' if met else 'FAIL'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
