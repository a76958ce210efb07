"""Store benchmark, one run: SqliteStore, EtcdStore on one etcd member and on three, side by side.

For each backend: creates/s and updates/s (each update carries the resourceVersion precondition),
with ``--writers`` writes in flight at once, the median of ``--rounds`` rounds; a list of
``--list-size`` objects; and watch delivery latency (write issued -> event received,
``--watch-updates`` sequential updates, p50/p99). Beside
each etcd cluster, the raw put rate from Python with the same gRPC client, the same value size and
the same number of writes in flight, in rounds alternating with the store's (the machine is shared
and noisy): the ratio of medians EtcdStore writes / raw puts is the goal (>= 50%). The raw rate
of the create's own transaction (compare version 0, put) is printed too: etcd serves it slower
than a plain put, which bounds what any compare-based store can reach.

etcd runs as real processes on loopback with their data on the real disk (each write is fsynced by
every member, as in production); the three members share this machine's disk and its 2 cores.
Run: ``python bench/store.py [--objects N] [--rounds N] [--writers N] [--list-size N] [--watch-updates N]``.
Needs ``etcd`` and ``etcdctl`` (Debian etcd-server, etcd-client).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aetcd import rpc

# The etcd process helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from etcd_support import EtcdCluster

from vmplane.store.base import Store
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdClient, EtcdConfig
from vmplane.store.semantics import encode
from vmplane.store.sqlite import SqliteStore

RESOURCE = "virtualmachines.kubevirt.io"
GOAL = 0.5


def vm(name: str, cpu: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {"cpu": {"sockets": cpu}, "memory": {"guest": "1Gi"}, "devices": {}},
                    "volumes": [
                        {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora"}}
                    ],
                }
            },
        },
    }


async def in_flight(count: int, writers: int, write: Callable[[int], Awaitable[object]]) -> float:
    """Writes per second doing ``write(0..count-1)`` with ``writers`` of them in flight."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await write(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(writers)))
    return count / (time.perf_counter() - started)


Rounds = Callable[[int], Awaitable[float]]


async def measure_store(
    store: Store, *, prefix: str, args: argparse.Namespace, raw: tuple[Rounds, Rounds] | None = None
) -> dict[str, float]:
    """The store's figures; with ``raw`` (puts, transactions), raw rounds alternate with the store's."""
    created: dict[int, dict[str, Any]] = {}
    creates, updates, raws, txns = [], [], [], []
    per_round = args.objects // args.rounds

    for number in range(args.rounds):
        first = number * per_round

        async def create(index: int, first: int = first) -> None:
            created[first + index] = await store.create(RESOURCE, vm(f"{prefix}-{first + index}"))

        async def update(index: int, first: int = first) -> None:
            current = created[first + index]
            changed = {**current, "spec": vm("x", cpu=2)["spec"]}  # carries its resourceVersion
            created[first + index] = await store.update(RESOURCE, changed)

        if raw is not None:
            raws.append(await raw[0](number))
            txns.append(await raw[1](number))
        creates.append(await in_flight(per_round, args.writers, create))
        if raw is not None:
            raws.append(await raw[0](args.rounds + number))
        updates.append(await in_flight(per_round, args.writers, update))
    done = per_round * args.rounds
    # Fill up to the list size (part of it exists already), then time a list.
    fill = max(0, args.list_size - done)
    await in_flight(fill, args.writers, lambda i: store.create(RESOURCE, vm(f"{prefix}-{done + i}")))
    started = time.perf_counter()
    listed = await store.list(RESOURCE)
    list_ms = (time.perf_counter() - started) * 1000
    assert len(listed.items) >= args.list_size
    latencies = await watch_latencies(store, created[0], args.watch_updates)
    return {
        "creates": statistics.median(creates),
        "updates": statistics.median(updates),
        "raw": statistics.median(raws) if raws else 0.0,
        "txn": statistics.median(txns) if txns else 0.0,
        "list_ms": list_ms,
        "p50": statistics.median(latencies),
        "p99": statistics.quantiles(latencies, n=100)[98],
    }


async def watch_latencies(store: Store, obj: dict[str, Any], updates: int) -> list[float]:
    events = store.watch(RESOURCE, "default", since=await store.current_revision())
    latencies: list[float] = []
    for cpu in range(updates):
        started = time.perf_counter()
        obj = await store.update(RESOURCE, {**obj, "spec": vm("x", cpu=cpu % 4 + 1)["spec"]})
        while True:
            event = await asyncio.wait_for(anext(events), 10)
            if event.resource_version == int(obj["metadata"]["resourceVersion"]):
                break
        latencies.append((time.perf_counter() - started) * 1000)
    await events.aclose()  # type: ignore[attr-defined]
    return latencies


def raw_writes(client: EtcdClient, args: argparse.Namespace) -> tuple[Rounds, Rounds]:
    """Rounds of raw puts, and of the create's transaction (put if absent) written by hand, with the
    same value size and writes in flight, through ``client``."""
    value = encode(vm("raw-0")).encode()
    per_round = args.objects // args.rounds
    absent = rpc.Compare.CompareTarget.Value("VERSION")

    async def round_of_puts(number: int) -> float:
        async def put(index: int) -> None:
            request = rpc.PutRequest(key=f"/raw/{number}/{index}".encode(), value=value)
            await client.call(lambda timeout: client.kv().Put(request, timeout=timeout))

        return await in_flight(per_round, args.writers, put)

    async def round_of_txns(number: int) -> float:
        async def txn(index: int) -> None:
            key = f"/txn/{number}/{index}".encode()
            request = rpc.TxnRequest(
                compare=[rpc.Compare(key=key, target=absent, version=0)],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))],
            )
            await client.call(lambda timeout: client.kv().Txn(request, timeout=timeout))

        return await in_flight(per_round, args.writers, txn)

    return round_of_puts, round_of_txns


def row(name: str, figures: dict[str, float]) -> str:
    return (
        f"{name:<22} creates/s {figures['creates']:7.0f}  updates/s {figures['updates']:7.0f}  "
        f"list {figures['list_ms']:6.0f} ms  watch p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms"
    )


async def run(args: argparse.Namespace, root: Path) -> bool:
    sqlite = SqliteStore.open(root / "store.db")
    try:
        print(row("SqliteStore", await measure_store(sqlite, prefix="s", args=args)), flush=True)
    finally:
        await sqlite.close()
    met = True
    for size in (1, 3):
        cluster = EtcdCluster(size=size, root=root / f"etcd-{size}").start()
        try:
            client = EtcdClient(EtcdConfig(cluster.endpoints))
            store = await EtcdStore.open(EtcdConfig(cluster.endpoints), compaction_interval=None)
            try:
                figures = await measure_store(
                    store, prefix=f"e{size}", args=args, raw=raw_writes(client, args)
                )
            finally:
                await store.close()
                await client.close()
        finally:
            cluster.stop()
        print(row(f"EtcdStore, {size} member{'s' if size > 1 else ''}", figures))
        raw = figures["raw"]
        create_ratio, update_ratio = figures["creates"] / raw, figures["updates"] / raw
        ok = min(create_ratio, update_ratio) >= GOAL
        met &= ok
        print(
            f"{'':<22} raw puts/s {raw:7.0f}: creates {create_ratio:.0%}, updates {update_ratio:.0%} "
            f"of raw (goal >= {GOAL:.0%}) -> {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
        print(
            f"{'':<22} raw put-if-absent transactions/s {figures['txn']:7.0f} "
            f"({figures['txn'] / raw:.0%} of raw puts; creates are "
            f"{figures['creates'] / figures['txn']:.0%} of it)",
            flush=True,
        )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2_000, help="creates, then updates of them")
    parser.add_argument("--writers", type=int, default=16, help="writes in flight at once")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are reported)")
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--watch-updates", type=int, default=200)
    args = parser.parse_args()
    print(
        f"{args.objects} creates and updates in {args.rounds} rounds alternating with as many raw puts, "
        f"{args.writers} in flight; list of {args.list_size}; medians of the rounds"
    )
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-store-", dir=Path.home()) as root:
        met = asyncio.run(run(args, Path(root)))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
