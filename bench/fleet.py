"""What ``bench/control.py`` runs against and how it watches: control-plane targets and an observer.

A ``Target`` is a running control plane reached over HTTPS with a kubeconfig, plus the processes it is
made of (their resident memory is summed). ``TARGETS`` maps ``--target`` names to starters: ``serve``
(one ``vmplane serve --hypervisor simulated`` process with zero hypervisor latency), ``cluster`` (the
same parts as separate processes: ``vmplane apiserver``, ``vmplane controller`` and one ``vmplane
agent --hypervisor simulated`` with zero latency, as ``LocalCluster`` starts them) and ``api`` (the
API server alone on the same store, the baseline for creates/s).

The ``Observer`` watches every resource the control plane writes from one revision on, counts each
write by what it changed (``vmi status.phase,status.conditions``, ``event SuccessfulCreate``), and
keeps the VMI state the phases wait for. Watching from a revision misses nothing, so the counts add up
to the store revisions that passed (any difference is printed as unwatched writes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from vmplane.cli.dev_cluster import LocalCluster

READY_TIMEOUT = 60.0
# Every resource a control plane writes while VMs start and change (pods are read-only views).
WATCHED = {
    "vm": "/apis/kubevirt.io/v1/virtualmachines",
    "vmi": "/apis/kubevirt.io/v1/virtualmachineinstances",
    "event": "/api/v1/events",
    "controllerrevision": "/apis/apps/v1/controllerrevisions",
    "kubevirt": "/apis/kubevirt.io/v1/kubevirts",
    "node": "/api/v1/nodes",
    "lease": "/apis/coordination.k8s.io/v1/leases",
    "namespace": "/api/v1/namespaces",
}


@dataclass
class Target:
    """A running control plane: where its API is and which processes it is made of."""

    url: str
    token: str
    ca_file: Path
    processes: list[subprocess.Popen[bytes]]
    data_dir: Path
    #: How to stop it, when more than its processes must be told (a cluster's supervisor).
    stopper: Callable[[], None] | None = None

    def rss_bytes(self) -> int:
        """Resident memory of all its processes (VmRSS)."""
        total = 0
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def session(self) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return aiohttp.ClientSession(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            connector=aiohttp.TCPConnector(ssl=context, limit=64),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            read_bufsize=1 << 22,
        )

    def stop(self) -> None:
        """SIGTERM every process, SIGKILL any that has not ended after 30 s."""
        if self.stopper is not None:
            self.stopper()
            return
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _started(argv: list[str], data_dir: Path, log: Path) -> Target:
    with log.open("ab") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    deadline, buffer = time.monotonic() + READY_TIMEOUT, b""
    while b"\n" not in buffer:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.wait()
            raise RuntimeError(f"{argv[3:5]} did not start (see {log})")
        if select.select([process.stdout], [], [], 0.2)[0]:
            buffer += os.read(process.stdout.fileno(), 4096)
    kubeconfig = Path(buffer.split(b"kubeconfig:", 1)[1].split(b"\n", 1)[0].strip().decode())
    config = yaml.safe_load(kubeconfig.read_text())
    return Target(
        url=config["clusters"][0]["cluster"]["server"],
        token=config["users"][0]["user"]["token"],
        ca_file=data_dir / "tls" / "ca.crt",
        processes=[process],
        data_dir=data_dir,
    )


def start_serve(tmp: Path) -> Target:
    """``vmplane serve --hypervisor simulated --simulated-latency 0``; the Node heartbeat hourly, so
    that the write counts are the VMs' own."""
    data_dir = tmp / "serve"
    argv = [sys.executable, "-m", "vmplane.cli.main", "serve", "--data-dir", str(data_dir)]
    argv += ["--guest-dir", str(tmp / "guests"), "--listen", "127.0.0.1:0", "--log-level", "warning"]
    argv += ["--hypervisor", "simulated", "--simulated-latency", "0", "--node-status-interval", "3600"]
    return _started(argv, data_dir, tmp / "serve.log")


def start_api_alone(tmp: Path) -> Target:
    """The API server of ``vmplane serve`` (same store, TLS, admission) without the control plane."""
    data_dir = tmp / "api"
    argv = [sys.executable, str(Path(__file__).with_name("control.py")), "--api-alone", str(data_dir)]
    return _started(argv, data_dir, tmp / "api.log")


def start_cluster(tmp: Path) -> Target:
    """API server, controller and a simulated agent (zero latency, hourly Node heartbeat) as three
    processes; the controller's leader Lease renewals are writes of the cluster's own."""
    local = LocalCluster(root=tmp / "cluster", simulated_latency=0.0)
    kubeconfig = local.start_apiserver()
    local.start_controller("controller1")
    local.start_agent("node01", labels="vmplane.io/node=node01", status_interval=3600)
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    ca_file = tmp / "cluster-ca.crt"
    ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return Target(
        url=cluster["server"],
        token=user["token"],
        ca_file=ca_file,
        processes=list(local.processes.values()),
        data_dir=local.api_dir,
        stopper=local.stop_all,
    )


TARGETS: dict[str, Callable[[Path], Target]] = {"serve": start_serve, "cluster": start_cluster}


def _digest(value: Any) -> int:
    return hash(json.dumps(value, sort_keys=True))


def _parts(obj: dict[str, Any]) -> dict[str, int]:
    """A fingerprint of each part a write may change: spec, metadata, each status field."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    parts = {"spec": _digest(obj.get("spec")), "metadata": _digest(metadata)}
    for key, value in (obj.get("status") or {}).items():
        parts[f"status.{key}"] = _digest(value)
    return parts


@dataclass
class Observer:
    """Counts every write from ``since`` by what it changed; tracks the VMIs' phase and sockets."""

    session: aiohttp.ClientSession
    since: int
    writes: Counter[str] = field(default_factory=Counter)
    running: set[str] = field(default_factory=set)
    sockets: dict[str, int] = field(default_factory=dict)
    at_sockets: Counter[int] = field(default_factory=Counter)
    _last: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    _waiters: dict[tuple[str, int], asyncio.Future[float]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for short, path in WATCHED.items():
            self._tasks.append(asyncio.create_task(self._watch(short, path)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def total(self) -> int:
        return sum(self.writes.values())

    async def _watch(self, short: str, path: str) -> None:
        # The API server ends a watch at its timeout and drops a watcher that falls 16 MiB behind
        # (this process also drives the load): watch again from the last revision seen, as an
        # informer does, so no write goes uncounted.
        try:
            await self._follow(short, path, self.since)
        finally:
            self._changed.set()  # wakes ``until``, which raises what ended the watch

    async def _follow(self, short: str, path: str, since: int) -> None:
        while True:
            query = f"?watch=1&resourceVersion={since}"
            timeout = aiohttp.ClientTimeout(total=None)
            async with self.session.get(path + query, timeout=timeout) as response:
                assert response.status == 200, await response.text()
                async for line in response.content:
                    if line.strip():
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # 410 Gone: writes went by unseen, uncounted
                            raise RuntimeError(f"the {short} watch from {since} ended: {event['object']}")
                        since = int(event["object"]["metadata"].get("resourceVersion") or since)
                        self._seen(short, event)

    def _seen(self, short: str, event: dict[str, Any]) -> None:
        obj, kind = event["object"], event["type"]
        meta = obj["metadata"]
        key = (short, meta.get("namespace", ""), meta["name"])
        parts = _parts(obj)
        old = self._last.pop(key, None) if kind == "DELETED" else self._last.get(key)
        if kind != "DELETED":
            self._last[key] = parts
        if short == "event":
            label = f"event {obj.get('reason')}"
        elif kind != "MODIFIED" or old is None:
            label = f"{short} {kind.lower()}"
        else:
            changed = sorted(k for k in parts.keys() | old.keys() if parts.get(k) != old.get(k))
            label = f"{short} {','.join(changed) or 'nothing changed'}"
        self.writes[label] += 1
        if short == "vmi":
            self._vmi(meta["name"], obj.get("status") or {})

    def _vmi(self, name: str, status: dict[str, Any]) -> None:
        if status.get("phase") == "Running":
            self.running.add(name)
        else:
            self.running.discard(name)
        sockets = (status.get("currentCPUTopology") or {}).get("sockets")
        if isinstance(sockets, int) and self.sockets.get(name) != sockets:
            if name in self.sockets:
                self.at_sockets[self.sockets[name]] -= 1
            self.sockets[name] = sockets
            self.at_sockets[sockets] += 1
            waiter = self._waiters.pop((name, sockets), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds after a VMI event (False if ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        while not condition():
            self._raise_if_a_watch_ended()
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return condition()
        return True

    def _raise_if_a_watch_ended(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled():
                raise RuntimeError("a watch of the observer ended") from task.exception()

    def sockets_shown(self, name: str, sockets: int) -> asyncio.Future[float]:
        """Resolves with the arrival time of the VMI status showing ``sockets`` (register first)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[(name, sockets)] = future
        return future

    async def head(self) -> int:
        """The store's current revision (a list is a consistent read at it)."""
        async with self.session.get("/api/v1/namespaces?limit=1") as response:
            return int((await response.json())["metadata"]["resourceVersion"])

    async def settle(self, quiet: float = 1.0, limit: float = 120.0) -> int:
        """Wait until the store has not moved for ``quiet`` seconds and every write was seen."""
        deadline = time.monotonic() + limit
        last, still = await self.head(), 0
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)
            head = await self.head()
            still = still + 1 if head == last else 0
            # Three quiet periods settle it even if a write went to a resource nobody watches.
            if still and (self.total >= head - self.since or still >= 3):
                return head
            last = head
        return last
