"""Live migration through vmplane vs QEMU's own migration of the same guests: one run, side by side.

For each guest size (``--sizes``, MiB; default 256 and 1024), ``--reps`` migrations each way:

(a) raw QMP: this process starts the test guest's QEMU itself (the command line vmplane's driver
    builds, so the device tree is the same) and migrates it to a second QEMU started with
    ``-incoming defer``, with the capabilities and parameters vmplane sets (``events``,
    ``return-path``, unlimited bandwidth, the cluster's default downtime limit): timed from
    spawning the target to the target running (``cont`` after ``completed``), polling
    ``query-migrate`` every 10 ms;
(b) vmplane: ``vmplane apiserver``, ``vmplane controller`` and two ``vmplane agent --hypervisor qemu``
    processes (``LocalCluster``); the same guest as a VM, migrated back and forth with ``PUT
    .../migrate``: timed from the request to the ``VirtualMachineInstanceMigration`` being
    ``Succeeded`` on a watch opened before the request (the VMI then runs on the target node),
    with the median time each phase of the migration was first seen.

Guest downtime is given twice: QEMU's own ``downtime`` (``query-migrate``; for vmplane from the
``Migrated`` event the source agent records), and the gap in the guest's serial status lines, which
the guest prints at least once a second, as seen by this process tailing both nodes' console logs
(the gap includes that second). The ratio printed is vmplane's median migration time over the raw
median (goal: at most 1.20).

Needs qemu-system-x86_64 and the test guest (``python guest/build.py --out guest/out``).
Run: ``python bench/migrate.py [--sizes 256 1024] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from qemu.qmp import QMPClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmplane.api.migration import MigrationLimits, MigrationPhase  # noqa: E402
from vmplane.cli.dev_cluster import LocalCluster  # noqa: E402
from vmplane.hypervisor.base import KernelBoot, MachineSpec  # noqa: E402
from vmplane.hypervisor.qemu.argv import build_argv  # noqa: E402
from vmplane.hypervisor.qemu.migration import CAPABILITIES, UNLIMITED_BANDWIDTH  # noqa: E402
from vmplane.hypervisor.qemu.naming import run_files  # noqa: E402

GUEST = ROOT / "guest" / "out"
MIB = 1 << 20
BOOT_TIMEOUT = 240.0
MIGRATION_TIMEOUT = 300.0
POLL = 0.01
STATUS = b"VMPLANE-STATUS "


class ConsoleTail(threading.Thread):
    """Follows every console log matching ``pattern`` under ``root``; times each status line."""

    def __init__(self, root: Path, pattern: str) -> None:
        super().__init__(daemon=True)
        self.root, self.pattern = root, pattern
        self.lines: list[tuple[float, str]] = []
        self._offsets: dict[tuple[Path, int], int] = {}
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(OSError):  # a run directory removed while it is globbed
                self._read_all()

    def _read_all(self) -> None:
        for path in self.root.glob(self.pattern):
            with contextlib.suppress(OSError):
                with path.open("rb") as log:
                    # A log made again at the same path (the guest came back) is a new file.
                    key = (path, os.fstat(log.fileno()).st_ino)
                    log.seek(self._offsets.get(key, 0))
                    data = log.read()
                complete = data[: data.rfind(b"\n") + 1]
                self._offsets[key] = self._offsets.get(key, 0) + len(complete)
                now = time.monotonic()
                for line in complete.splitlines():
                    if line.startswith(STATUS):
                        self.lines.append((now, f"{key[0]}@{key[1]}"))

    def stop(self) -> None:
        self._stop.set()

    def gap(self, start: float) -> float | None:
        """The silence across the switch-over after ``start``: from the last status line on one
        log to the first on another."""
        seen = sorted((t, p) for t, p in self.lines if t >= start)
        for (before, old), (after, new) in itertools.pairwise(seen):
            if new != old:
                return after - before
        return None


def reachable_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o711)
    return path


def cmdline() -> str:
    return (GUEST / "cmdline").read_text().strip()


# -- (a) raw QMP ---------------------------------------------------------------------------------


@dataclass
class RawQemu:
    run_dir: Path
    process: subprocess.Popen[bytes]
    qmp: QMPClient

    @classmethod
    async def spawn(cls, spec: MachineSpec, run_dir: Path, *, incoming: bool) -> RawQemu:
        shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "qemu").mkdir(parents=True)
        argv = build_argv(spec, run_dir=run_dir, accel="tcg", incoming=incoming)
        # Spawning is the target's start-up, part of what is timed, as it is for vmplane's agent.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
        qmp = QMPClient(run_dir.name)
        socket = run_files(run_dir)["qmp"]
        deadline = time.monotonic() + 30
        while True:
            try:
                await qmp.connect(str(socket))
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                await asyncio.sleep(0.005)
        return cls(run_dir, process, qmp)

    def console(self) -> Path:
        return run_files(self.run_dir)["console"]

    async def end(self) -> None:
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        self.process.kill()
        self.process.wait()


async def raw_migrations(size: int, reps: int, root: Path) -> tuple[list[float], list[int], list[float]]:
    """``reps`` raw migrations of one guest (each to a fresh target): times, QEMU downtimes, gaps."""
    kernel_dir = reachable_dir("vmplane-bench-kernel-")
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(GUEST / name, kernel_dir / name)
    spec = MachineSpec(
        name="raw",
        uuid=str(uuid.uuid4()),
        sockets=1,
        max_sockets=4,
        memory_bytes=size * MIB,
        kernel_boot=KernelBoot(str(kernel_dir / "vmlinuz"), str(kernel_dir / "initrd.img"), cmdline()),
    )
    tail = ConsoleTail(root, "raw-*/qemu/console.log")
    tail.start()
    source = await RawQemu.spawn(spec, root / "raw-0", incoming=False)
    await source.qmp.execute("cont")
    times: list[float] = []
    downtimes: list[int] = []
    gaps: list[float] = []
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not tail.lines and time.monotonic() < deadline:  # noqa: ASYNC110 (a file is polled)
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        for rep in range(1, reps + 1):
            started = time.monotonic()
            target = await RawQemu.spawn(spec, root / f"raw-{rep}", incoming=True)
            await target.qmp.execute("migrate-set-capabilities", {"capabilities": CAPABILITIES})
            await target.qmp.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
            port = (await target.qmp.execute("query-migrate"))["socket-address"][0]["port"]
            await source.qmp.execute("migrate-set-capabilities", {"capabilities": CAPABILITIES})
            parameters = {
                "max-bandwidth": UNLIMITED_BANDWIDTH,
                "downtime-limit": MigrationLimits().max_downtime_ms,
            }
            await source.qmp.execute("migrate-set-parameters", parameters)
            await source.qmp.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
            while (info := await source.qmp.execute("query-migrate"))["status"] != "completed":
                if info["status"] in ("failed", "cancelled"):
                    raise RuntimeError(f"raw migration {info['status']}: {info.get('error-desc')}")
                await asyncio.sleep(POLL)
            while (await target.qmp.execute("query-status"))["status"] != "running":
                with contextlib.suppress(Exception):
                    await target.qmp.execute("cont")
                await asyncio.sleep(POLL)
            ended = time.monotonic()
            times.append(ended - started)
            downtimes.append(int(info.get("downtime", 0)))
            await asyncio.sleep(2.5)  # let the target print a few lines
            gap = tail.gap(started)
            if gap is not None:
                gaps.append(gap)
            await source.end()
            source = target
    finally:
        await source.end()
        tail.stop()
        shutil.rmtree(kernel_dir, ignore_errors=True)
    return times, downtimes, gaps


# -- (b) vmplane ---------------------------------------------------------------------------------


def install_guest(guest_dir: Path) -> None:
    kernel_dir = guest_dir / "images" / "vmplane_test-guest_latest"
    kernel_dir.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(GUEST / name, kernel_dir / name)


def vm_manifest(name: str, size: int) -> dict[str, Any]:
    boot = {"kernelArgs": cmdline(), "container": {"image": "vmplane/test-guest:latest"}}
    boot["container"] |= {"kernelPath": "/vmlinuz", "initrdPath": "/initrd.img"}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "domain": {
                        "cpu": {"sockets": 1, "maxSockets": 4},
                        "memory": {"guest": f"{size}Mi"},
                        "firmware": {"kernelBoot": boot},
                        "devices": {},
                    },
                }
            },
        },
    }


@dataclass
class Plane:
    local: LocalCluster
    api: client.ApiClient
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)

    def wait(self, plural: str, name: str, done: Any, timeout: float) -> dict[str, Any]:
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            "kubevirt.io",
            "v1",
            "default",
            plural,
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(timeout),
        )
        try:
            for event in stream:
                if done(event["object"]):
                    return dict(event["object"])
        finally:
            stream.close()
        raise RuntimeError(f"{plural}/{name}: not done within {timeout}s")


class MigrationWatch(threading.Thread):
    """Every migration event, each with the time it arrived, from one watch opened before the
    migration is asked for (so neither a poll for its name nor a watch opened late is timed)."""

    def __init__(self, plane: Plane) -> None:
        super().__init__(daemon=True)
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self._watch = watch.Watch()
        listed = plane.custom.list_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachineinstancemigrations"
        )
        self.known = {m["metadata"]["uid"] for m in listed["items"]}
        self._stream = self._watch.stream(
            plane.custom.list_namespaced_custom_object,
            "kubevirt.io",
            "v1",
            "default",
            "virtualmachineinstancemigrations",
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=int(MIGRATION_TIMEOUT),
        )

    def run(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when stop() closes it
            for event in self._stream:
                self.events.put((time.monotonic(), event["object"]))

    def stop(self) -> None:
        self._watch.stop()

    def follow(self, started: float) -> tuple[float, dict[str, float]]:
        """The new migration's end time and when each of its phases was first seen (s after ``started``)."""
        seen: dict[str, float] = {}
        deadline = started + MIGRATION_TIMEOUT
        while time.monotonic() < deadline:
            at, obj = self.events.get(timeout=MIGRATION_TIMEOUT)
            if obj["metadata"]["uid"] in self.known:
                continue
            phase = _phase(obj) or "(none)"
            seen.setdefault(phase, at - started)
            if phase in ("Succeeded", "Failed"):
                self.known.add(obj["metadata"]["uid"])
                if phase != "Succeeded":
                    raise RuntimeError(f"vmplane migration {obj['metadata']['name']} failed")
                return at, seen
        raise RuntimeError(f"no migration ended within {MIGRATION_TIMEOUT}s")


def _phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


_DOWNTIME = re.compile(r"guest downtime (\d+) ms")


def downtime_of(core: client.CoreV1Api, vmi: str, seen: set[str]) -> int | None:
    """QEMU's downtime from the newest ``Migrated`` event of ``vmi`` not in ``seen``."""
    events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={vmi}").items
    for event in sorted(events, key=lambda e: e.metadata.creation_timestamp or 0, reverse=True):
        if event.reason == "Migrated" and event.metadata.uid not in seen:
            seen.add(event.metadata.uid)
            match = _DOWNTIME.search(event.message or "")
            return int(match.group(1)) if match else None
    print(f"  no Migrated event of {vmi}: {[(e.reason, e.message) for e in events]}", file=sys.stderr)
    return None


def vmplane_migrations(
    plane: Plane, size: int, reps: int, timelines: list[dict[str, float]]
) -> tuple[list[float], list[int], list[float]]:
    name = f"bench-{size}"
    assert plane.local.guest_root is not None
    tail = ConsoleTail(plane.local.guest_root, "node0*/machines/*/qemu/console.log")
    tail.start()
    plane.custom.create_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", vm_manifest(name, size)
    )
    core = client.CoreV1Api(plane.api)
    times: list[float] = []
    downtimes: list[int] = []
    gaps: list[float] = []
    seen: set[str] = set()
    try:
        plane.wait("virtualmachineinstances", name, lambda o: _phase(o) == "Running", BOOT_TIMEOUT)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not tail.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)
        for _ in range(reps):
            watcher = MigrationWatch(plane)
            watcher.start()
            try:
                started = time.monotonic()
                path = f"/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/{name}/migrate"
                plane.api.call_api(
                    path, "PUT", body={}, auth_settings=["BearerToken"], _preload_content=False
                )
                ended, phases = watcher.follow(started)
            finally:
                watcher.stop()
            timelines.append(phases)
            times.append(ended - started)
            time.sleep(2.5)
            gap = tail.gap(started)
            if gap is not None:
                gaps.append(gap)
            downtime = downtime_of(core, name, seen)
            if downtime is not None:
                downtimes.append(downtime)
    finally:
        tail.stop()
        plane.custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", name)
    return times, downtimes, gaps


@contextlib.contextmanager
def cluster() -> Iterator[Plane]:
    guests = reachable_dir("vmplane-bench-migrate-")
    for node in ("node01", "node02"):
        install_guest(guests / node)
    root = Path(tempfile.mkdtemp(prefix="vmplane-bench-cluster-"))
    local = LocalCluster(root=root, hypervisor="qemu", guest_root=guests)
    try:
        local.start(controllers=1, nodes=("node01", "node02"))
        assert local.admin_kubeconfig is not None
        api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
        try:
            yield Plane(local, api)
        finally:
            api.close()
    finally:
        local.stop_all()
        for pidfile in guests.glob("**/qemu/qemu.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(guests, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def timeline(timelines: list[dict[str, float]]) -> str:
    """Each phase's median first-seen time over the runs, in upstream's order of phases."""
    phases = [p for p in (m.value for m in MigrationPhase) if any(p in t for t in timelines)]
    return ", ".join(f"{p} {statistics.median(t[p] for t in timelines if p in t) * 1000:.0f}" for p in phases)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms" if values else "n/a"


def _median(values: list[int]) -> str:
    return f"{statistics.median(values):.0f} ms" if values else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="guest memory sizes, MiB")
    parser.add_argument("--reps", type=int, default=3, help="migrations per size and path")
    args = parser.parse_args()
    worst = 0.0
    raw_root = reachable_dir("vmplane-bench-raw-")
    try:
        with cluster() as plane:
            for size in args.sizes:
                raw, raw_down, raw_gaps = asyncio.run(raw_migrations(size, args.reps, raw_root))
                timelines: list[dict[str, float]] = []
                ours, our_down, our_gaps = vmplane_migrations(plane, size, args.reps, timelines)
                ratio = statistics.median(ours) / statistics.median(raw)
                worst = max(worst, ratio)
                print(f"guest {size} MiB, {args.reps} migrations each way (medians):")
                for label, times, down, gaps in (
                    ("(a) raw QMP", raw, raw_down, raw_gaps),
                    ("(b) vmplane", ours, our_down, our_gaps),
                ):
                    print(f"  {label}: {_ms(times)}, QEMU downtime {_median(down)}, console gap {_ms(gaps)}")
                print(f"  vmplane / raw migration time: {ratio:.2f} (goal <= 1.20)")
                print(f"    raw runs: {', '.join(f'{t * 1000:.0f}' for t in raw)} ms")
                print(f"    vmplane runs: {', '.join(f'{t * 1000:.0f}' for t in ours)} ms")
                print(f"    vmplane phases first seen (median ms after the PUT): {timeline(timelines)}")
    finally:
        shutil.rmtree(raw_root, ignore_errors=True)
    met = worst <= 1.20
    print(f"worst ratio {worst:.2f} -> {'PASS' if met else 'MISS'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
