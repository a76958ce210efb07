"""Control plane at fleet scale (issue 13): one run, every figure beside its baseline from the same run.

Against ``vmplane serve --hypervisor simulated --simulated-latency 0`` (``--target``; see ``fleet.py``
for adding the multi-process cluster), driven over HTTPS from this process:

(a) creates N running VMs (``--concurrency`` clients): creates/s with the control plane running
    beside creates/s of the API server alone (same TLS, admission and store, no controllers), and the
    time until every VMI is Running;
(b) flips the KubeVirt rollout strategy to LiveUpdate and PATCHes every VM's sockets +1: time until
    every VMI status shows it, VMs live-updated per second ÷ raw ``SqliteStore`` updates per second
    of the same VM objects (one writer, in this process, on the same file once the server stopped:
    same durability, synchronous=FULL);
(c) PATCH -> VMI status showing the change, p50/p99 over ``--changes`` single changes;
(d) resident memory of the target per 1,000 VMs, over its idle baseline (and in total);
(e) store writes per VM start, per strategy flip, per live change, counted from store revisions and
    broken down by what each write changed (from watches of every written resource), each with why;
(f) listing the N VMs through the API ÷ ``json.dumps`` of the same list.

Exits 1 when a goal is missed (``make bench`` relies on it), 2 when the run itself fails.
Run: ``.venv/bin/python bench/control.py [--vms 10000] [--changes 1000] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from fleet import TARGETS, Observer, Target, start_api_alone

from vmplane.apiserver.app import ListenAddress, run_server
from vmplane.store.sqlite import SqliteStore

VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
KUBEVIRT = "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt"
MERGE = {"Content-Type": "application/merge-patch+json"}
MB = 1024 * 1024

# Why each kind of write happens, by the start of its label (first match); a write none of these
# explains is printed as unexplained.
WHY = (
    ("vm added", "client: the create"),
    ("vm metadata,spec", "client: the PATCH (generation +1)"),
    ("vm status.conditions ", "VM controller: mirrors a VMI condition (HotVCPUChange) on or off"),
    ("vm status", "VM controller: VM status follows the VMI (printableStatus, conditions, generations)"),
    ("controllerrevision added", "VM controller: the revision of the template the VMI runs"),
    ("vmi added", "VM controller: the VMI of a running VM"),
    ("vmi metadata,spec", "VM controller: the live change into the VMI spec"),
    ("vmi status.conditions,status.nodeName", "scheduler: the VMI bound to a node"),
    ("vmi status.conditions ", "node agent: the hotplug in flight (HotVCPUChange True)"),
    ("vmi status", "node agent: the VMI status from the hypervisor"),
    ("event SuccessfulCreate", "VM controller: event for the VMI it created"),
    ("event Scheduled", "scheduler: event for the binding"),
    ("event Started", "node agent: event for the guest started"),
    ("event LiveUpdate", "VM controller: event for a change going live"),
    ("event HotplugApplied", "node agent: event for the hotplug done, with its time"),
    ("kubevirt", "client: the strategy flip, and the KubeVirt status"),
    ("lease", "node agent: the Node's Lease (its heartbeat; hourly in this bench)"),
    ("node", "node agent: the Node's status"),
)


def why(label: str) -> str:
    # A prefix ending in a space matches that label exactly (only those parts changed).
    return next((reason for prefix, reason in WHY if f"{label} ".startswith(prefix)), "(unexplained)")


def vm_manifest(name: str, max_sockets: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "fleet"}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "domain": {
                        "cpu": {"sockets": 1, "maxSockets": max_sockets},
                        "memory": {"guest": "64Mi"},
                        "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                    },
                    "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros"}}],
                }
            },
        },
    }


def sockets_patch(sockets: int) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": sockets}}}}}}


# Writes that happen whatever the phase does (a node's heartbeat): reported, not counted per unit.
BACKGROUND = ("lease",)


@dataclass
class Phase:
    """Store writes of one phase: revisions that passed, and the observer's breakdown of them."""

    name: str
    per: int
    revisions: int
    writes: Counter[str]

    @property
    def background(self) -> int:
        return sum(count for label, count in self.writes.items() if label.startswith(BACKGROUND))

    @property
    def per_unit(self) -> float:
        """Writes per unit caused by the phase: every revision but the background writes."""
        return (self.revisions - self.background) / self.per


@dataclass
class Figures:
    creates_alone: float = 0.0
    creates: float = 0.0
    all_running: float = 0.0
    live_seconds: float = 0.0
    converged: bool = False
    raw_updates: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss_idle: int = 0
    rss_running: int = 0
    rss_live: int = 0
    list_api: float = 0.0
    list_dumps: float = 0.0
    phases: list[Phase] = field(default_factory=list)


async def _each(session: aiohttp.ClientSession, count: int, concurrency: int, send: Any) -> float:
    """``send(session, index)`` for 0..count-1 over ``concurrency`` clients; the seconds it took."""
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            await send(session, index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def create_vms(session: aiohttp.ClientSession, args: argparse.Namespace, max_sockets: int) -> float:
    async def send(session: aiohttp.ClientSession, index: int) -> None:
        async with session.post(VMS, json=vm_manifest(f"vm-{index:05d}", max_sockets)) as response:
            assert response.status == 201, await response.text()

    return await _each(session, args.vms, args.concurrency, send)


async def patch(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
    async with session.patch(path, data=json.dumps(body), headers=MERGE) as response:
        assert response.status == 200, await response.text()


async def api_alone(tmp: Path, args: argparse.Namespace, max_sockets: int) -> float:
    target = start_api_alone(tmp)
    try:
        async with target.session() as session:
            return args.vms / await create_vms(session, args, max_sockets)
    finally:
        target.stop()


async def phase(observer: Observer, name: str, per: int, start: int, before: Counter[str]) -> Phase:
    end = await observer.settle()
    return Phase(name, per, end - start, observer.writes - before)


async def run_target(target: Target, args: argparse.Namespace, max_sockets: int, figures: Figures) -> None:
    timeout = max(300.0, args.vms * 0.2)
    async with target.session() as session:
        observer = Observer(session, since=await Observer(session, 0).head())
        observer.start()
        try:
            await _run_phases(session, observer, args, max_sockets, timeout, target, figures)
        finally:
            await observer.close()


async def _run_phases(
    session: aiohttp.ClientSession,
    observer: Observer,
    args: argparse.Namespace,
    max_sockets: int,
    timeout: float,
    target: Target,
    figures: Figures,
) -> None:
    n = args.vms
    figures.rss_idle = target.rss_bytes()
    start, before = observer.since, observer.writes.copy()
    started = time.perf_counter()
    figures.creates = n / await create_vms(session, args, max_sockets)
    if not await observer.until(lambda: len(observer.running) == n, timeout):
        raise RuntimeError(f"only {len(observer.running)} of {n} VMIs Running after {timeout:.0f} s")
    figures.all_running = time.perf_counter() - started
    figures.phases.append(await phase(observer, "VM start", n, start, before))
    figures.rss_running = target.rss_bytes()

    start, before = await observer.head(), observer.writes.copy()
    await patch(session, KUBEVIRT, {"spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}}})
    figures.phases.append(await phase(observer, "strategy flip", n, start, before))

    start, before = await observer.head(), observer.writes.copy()

    async def live(session: aiohttp.ClientSession, index: int) -> None:
        await patch(session, f"{VMS}/vm-{index:05d}", sockets_patch(2))

    started = time.perf_counter()
    await _each(session, n, args.concurrency, live)
    figures.converged = await observer.until(lambda: observer.at_sockets[2] == n, timeout)
    figures.live_seconds = time.perf_counter() - started
    figures.phases.append(await phase(observer, "live change, all VMs at once", n, start, before))
    figures.rss_live = target.rss_bytes()

    start, before = await observer.head(), observer.writes.copy()
    sockets = dict.fromkeys(range(n), 2)
    for change in range(args.changes):
        index = change % n
        sockets[index] += 1
        name = f"vm-{index:05d}"
        shown = observer.sockets_shown(name, sockets[index])
        sent = time.perf_counter()
        await patch(session, f"{VMS}/{name}", sockets_patch(sockets[index]))
        figures.latencies.append(await asyncio.wait_for(shown, 30) - sent)
    figures.phases.append(await phase(observer, "live change, one at a time", args.changes, start, before))

    bodies = []
    for _ in range(3):
        listed = time.perf_counter()
        async with session.get(VMS) as response:
            bodies.append(await response.read())
        figures.list_api += (time.perf_counter() - listed) / 3
    items = json.loads(bodies[-1])["items"]
    assert len(items) == n
    dumps = []
    for _ in range(3):
        dumped = time.perf_counter()
        json.dumps({"items": items})
        dumps.append(time.perf_counter() - dumped)
    figures.list_dumps = statistics.median(dumps)


async def raw_updates(store_file: Path, n: int) -> float:
    """Sequential get + update of each VM (sockets +1) through ``SqliteStore``: one writer."""
    store = SqliteStore.open(store_file)
    try:
        started = time.perf_counter()
        for index in range(n):
            vm = await store.get("virtualmachines.kubevirt.io", "default", f"vm-{index:05d}")
            vm["spec"]["template"]["spec"]["domain"]["cpu"]["sockets"] += 1
            await store.update("virtualmachines.kubevirt.io", vm)
        return n / (time.perf_counter() - started)
    finally:
        await store.close()


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def report(figures: Figures, args: argparse.Namespace) -> bool:
    n = args.vms
    met = []
    ratio = figures.creates / figures.creates_alone
    met.append(ratio >= 0.5)
    print(
        f"(a) creates/s with the control plane running {figures.creates:.0f}, API alone "
        f"{figures.creates_alone:.0f}: ratio {ratio:.0%} (goal >= 50%) -> {verdict(met[-1])}; "
        f"all {n} VMIs Running after {figures.all_running:.1f} s"
    )
    live_rate = n / figures.live_seconds
    ratio = live_rate / figures.raw_updates
    met.append(figures.converged and ratio >= 0.25)
    converged = "converged" if figures.converged else "NOT converged"
    print(
        f"(b) live change of all {n} VMs (sockets +1): {converged}"
        f" in {figures.live_seconds:.1f} s, {live_rate:.0f} VMs/s; raw SqliteStore updates/s "
        f"{figures.raw_updates:.0f}: ratio {ratio:.1%} (goal >= 25%) -> {verdict(met[-1])}"
    )
    p50, p99 = (percentile(figures.latencies, p) * 1000 for p in (50, 99))
    print(
        f"(c) PATCH -> VMI status over {len(figures.latencies)} single changes: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (reported, no goal)"
    )
    per_1000 = (figures.rss_live - figures.rss_idle) / n * 1000 / MB
    met.append(per_1000 <= 20)
    print(
        f"(d) resident memory per 1,000 VMs over the idle {figures.rss_idle / MB:.0f} MB: {per_1000:.1f} MB "
        f"(goal <= 20 MB) -> {verdict(met[-1])}; in total {figures.rss_live / MB:.0f} MB "
        f"({figures.rss_live / n * 1000 / MB:.1f} MB per 1,000; {figures.rss_running / MB:.0f} MB "
        "before the live changes)"
    )
    goals = {"VM start": 7.0, "live change, one at a time": 5.0, "live change, all VMs at once": 5.0}
    for entry in figures.phases:
        goal = goals.get(entry.name)
        if goal is not None:
            met.append(entry.per_unit <= goal)
        target = f" (goal <= {goal:.0f}) -> {verdict(entry.per_unit <= goal)}" if goal else ""
        background = f", besides {entry.background} background" if entry.background else ""
        print(f"(e) store writes per {entry.name}: {entry.per_unit:.2f}{target}{background}")
        for label, count in entry.writes.most_common():
            print(f"      {count / entry.per:5.2f}  {label:58} {why(label)}")
        unwatched = entry.revisions - entry.writes.total()
        if unwatched:
            print(f"      {unwatched / entry.per:5.2f}  (writes to resources not watched)")
    ratio = figures.list_api / figures.list_dumps
    met.append(ratio <= 3)
    print(
        f"(f) list {n} VMs through the API {figures.list_api * 1000:.0f} ms, json.dumps "
        f"{figures.list_dumps * 1000:.0f} ms: {ratio:.2f}x (goal <= 3x) -> {verdict(met[-1])}"
    )
    return all(met)


async def bench(args: argparse.Namespace) -> int:
    # The live changes of (b) and (c) go round-robin: (b) adds one socket to each VM, (c) changes/N.
    max_sockets = 3 + -(-args.changes // args.vms)
    figures = Figures()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-") as name:
        tmp = Path(name)
        figures.creates_alone = await api_alone(tmp, args, max_sockets)
        target = TARGETS[args.target](tmp)
        try:
            await run_target(target, args, max_sockets, figures)
        finally:
            target.stop()
        figures.raw_updates = await raw_updates(target.data_dir / "store.db", args.vms)
    # The machine is shared: the load says how far the absolute rates (not the ratios) can be trusted.
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"{args.target}, {args.vms} VMs, {args.concurrency} clients ({load}):")
    return 0 if report(figures, args) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1000, help="single live changes for (c)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients creating and patching")
    parser.add_argument("--target", choices=sorted(TARGETS), default="serve")
    parser.add_argument("--api-alone", type=Path, metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.api_alone is not None:
        # The baseline server of (a), run as its own process by fleet.start_api_alone.
        asyncio.run(
            run_server(
                data_dir=args.api_alone,
                listen=ListenAddress.parse("127.0.0.1:0"),
                on_ready=lambda path: print(f"kubeconfig: {path}", flush=True),
            )
        )
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
