"""API server benchmark: one run, figures printed as ratios.

(a) creates/s through the API (with the VMs' watch cache live, as it is once anything has listed them)
    vs a minimal aiohttp handler writing the same object to the store, in alternating rounds;
(b) listing 10,000 VMs through the API vs ``json.dumps`` of the same list (median of warm lists), with
    the first list (which fills the watch cache) and a list right after a write elsewhere (which
    waits for the cache to confirm it is current) alongside;
(c) watch delivery latency (write committed -> line received) with 100 concurrent watchers.

Server and clients share one process and event loop over plain HTTP on 127.0.0.1 (TLS and the
subprocess boundary are left out on purpose: both sides of each ratio pay the same stack).
Run: ``python bench/api.py [--creates N] [--rounds N] [--list-size N] [--watchers N] [--updates N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.kinds import default_registry
from vmplane.store.base import Store
from vmplane.store.sqlite import SqliteStore

TOKEN = "bench"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RESOURCE = "virtualmachines.kubevirt.io"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


def vm(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "cpu": {"sockets": 2, "maxSockets": 8},
                        "memory": {"guest": "1Gi"},
                        "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                    },
                    "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros"}}],
                }
            },
        },
    }


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def _timed_creates(url: str, prefix: str, count: int, concurrency: int) -> float:
    names = iter(range(count))
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(url) as response:  # starts the API's watch cache; 405 on the direct app
            await response.read()

        async def worker() -> None:
            for index in names:
                async with session.post(url, json=vm(f"{prefix}-{index}")) as response:
                    assert response.status == 201, await response.text()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def _direct_app(store: Store) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        stored = await store.create(RESOURCE, await request.json())
        return web.json_response(stored, status=201)

    app = web.Application()
    app.router.add_post(VMS, create)
    return app


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


async def bench_creates(tmp: Path, count: int, concurrency: int, rounds: int) -> bool:
    # API and direct take turns, ``rounds`` times each, so that a burst of load on the shared machine
    # hits both sides instead of deciding the ratio; each round writes to a fresh file.
    makers: dict[str, Callable[[Store], web.Application]] = {
        "api": lambda s: create_app(store=s, registry=default_registry(), token=TOKEN),
        "direct": _direct_app,
    }
    results: dict[str, list[float]] = {label: [] for label in makers}
    for round_number in range(rounds):
        for label, make_app in makers.items():
            store = SqliteStore.open(tmp / f"creates-{label}-{round_number}.db")
            await bootstrap(store)
            server = await _serve(make_app(store))
            try:
                url = str(server.make_url(VMS))
                results[label].append(await _timed_creates(url, label, count // rounds, concurrency))
            finally:
                await server.close()
                await store.close()
    api, direct = statistics.median(results["api"]), statistics.median(results["direct"])
    ratios = [a / d for a, d in zip(results["api"], results["direct"], strict=True)]
    print(
        f"(a) creates/s (median of {rounds} alternating rounds): API {api:.0f}, direct store handler "
        f"{direct:.0f}, ratio {api / direct:.0%} (goal >= 50%; rounds {min(ratios):.0%}-{max(ratios):.0%}) "
        f"-> {verdict(api / direct >= 0.5)}"
    )
    return api / direct >= 0.5


async def _median_seconds(action: Callable[[], Awaitable[Any]], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        await action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


async def bench_list(tmp: Path, size: int) -> bool:
    store = SqliteStore.open(tmp / "list.db")
    await bootstrap(store)
    filled = time.perf_counter()
    for index in range(size):
        await store.create(RESOURCE, vm(f"vm-{index:05d}"))
    print(f"    (filled {size} VMs in {time.perf_counter() - filled:.1f} s)")
    items = (await store.list(RESOURCE, "default")).items

    async def dumps_once() -> None:
        json.dumps({"items": items})

    # Before the server (and its watch cache) exist, so the baseline runs in the smaller heap.
    baseline = await _median_seconds(dumps_once, 5)
    server = await _serve(create_app(store=store, registry=default_registry(), token=TOKEN))
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            url = server.make_url(VMS)

            async def list_once() -> None:
                async with session.get(url) as response:
                    body = await response.read()
                    assert response.status == 200
                    assert len(body) > size * 100

            first = await _median_seconds(list_once, 1)
            api = await _median_seconds(list_once, 5)

            async def list_after_write() -> None:
                await store.create("configmaps", {"metadata": {"name": f"cm-{time.perf_counter_ns()}"}})
                await list_once()

            after_write = await _median_seconds(list_after_write, 5)
    finally:
        await server.close()
        await store.close()
    print(
        f"(b) list {size} VMs: API {api * 1000:.0f} ms, json.dumps {baseline * 1000:.0f} ms, "
        f"ratio {api / baseline:.2f}x (goal <= 3x); first list {first * 1000:.0f} ms, "
        f"after a write elsewhere {after_write * 1000:.0f} ms -> {verdict(api / baseline <= 3)}"
    )
    return api / baseline <= 3


async def bench_watch(tmp: Path, watchers: int, updates: int) -> None:
    store = SqliteStore.open(tmp / "watch.db")
    await bootstrap(store)
    await store.create(RESOURCE, vm("watched"))
    server = await _serve(create_app(store=store, registry=default_registry(), token=TOKEN))
    latencies: list[float] = []
    written: dict[str, float] = {}
    received: dict[str, int] = {}
    all_received: dict[str, asyncio.Event] = {}
    try:
        revision = await store.current_revision()
        url = server.make_url(f"{VMS}?watch=1&resourceVersion={revision}&timeoutSeconds=120")
        connector = aiohttp.TCPConnector(limit=watchers + 10)
        async with aiohttp.ClientSession(headers=AUTH, connector=connector) as session:
            ready = 0
            all_ready = asyncio.Event()

            async def watcher() -> None:
                nonlocal ready
                async with session.get(url) as response:
                    ready += 1
                    if ready == watchers:
                        all_ready.set()
                    while True:
                        line = await response.content.readline()
                        if not line:
                            return
                        arrived = time.perf_counter()
                        rv = json.loads(line)["object"]["metadata"]["resourceVersion"]
                        latencies.append(arrived - written[rv])
                        received[rv] = received.get(rv, 0) + 1
                        if received[rv] == watchers:
                            all_received[rv].set()

            tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
            await asyncio.wait_for(all_ready.wait(), 30)
            for index in range(updates):
                current = await store.get(RESOURCE, "default", "watched")
                current["metadata"]["labels"] = {"n": str(index)}
                started = time.perf_counter()
                next_rv = str(await store.current_revision() + 1)
                written[next_rv] = started
                all_received[next_rv] = asyncio.Event()
                stored = await store.update(RESOURCE, current)
                assert stored["metadata"]["resourceVersion"] == next_rv
                await asyncio.wait_for(all_received[next_rv].wait(), 30)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await server.close()
        await store.close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"(c) watch delivery with {watchers} watchers, {updates} updates: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms ({len(latencies)} deliveries; reported, no goal)"
    )


async def main() -> int:
    """Run (a), (b) and (c); 1 when (a) or (b) misses its goal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="alternating API/direct rounds for (a)")
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-") as tmp:
        creates_met = await bench_creates(Path(tmp), args.creates, args.concurrency, args.rounds)
        list_met = await bench_list(Path(tmp), args.list_size)
        await bench_watch(Path(tmp), args.watchers, args.updates)
    return 0 if creates_met and list_met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
