"""Live-update latency through the control plane vs raw QMP, on the same QEMU processes: one run.

(a) End to end: ``vmplane serve --hypervisor qemu --accel tcg`` runs ``--vms`` test guests under
    LiveUpdate; each change PATCHes one VM's ``sockets`` up by one and waits, on a VMI watch opened
    beforehand, for the VMI status whose ``currentCPUTopology.sockets`` shows it (the agent reads it
    back from QEMU's ``query-cpus-fast``). Timed from the PATCH being sent and from it being accepted.
    Changes go round-robin over the VMs so no guest needs more vCPUs than TCG on 2 cores handles well.
    The end-to-end time is split where the VMI watch shows it: PATCH accepted -> VMI spec changed
    (API, VM controller, planner) and VMI spec -> status (node agent); the agent's own timing of its
    QMP calls comes from its ``HotplugApplied`` events.
(b) Raw QMP, afterwards: ``vmplane serve`` is stopped (the guests keep running: a QMP socket takes one
    client), this process connects to each QEMU itself and times ``device_add`` of the next free vCPU
    slot plus ``query-cpus-fast``: the two QMP calls the end-to-end path cannot do without. These run
    at higher vCPU counts than (a), which under TCG makes them somewhat slower; the agent's own QMP
    timing, taken at the same moments as (a), is printed as a second reference.

Needs qemu-system-x86_64, qemu-img and the test guest (``python guest/build.py --out guest/out``).
Run: ``python bench/hotplug.py [--changes 50] [--vms 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from qemu.qmp import QMPClient

GUEST = Path(__file__).resolve().parents[1] / "guest" / "out"
VMIS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
KUBEVIRT = "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt"
BOOT_TIMEOUT = 180.0
CHANGE_TIMEOUT = 30.0


def vm_manifest(name: str, max_sockets: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "domain": {
                        "cpu": {"sockets": 1, "maxSockets": max_sockets},
                        "memory": {"guest": "512Mi"},
                        "firmware": {
                            "kernelBoot": {
                                "kernelArgs": (GUEST / "cmdline").read_text().strip(),
                                "container": {
                                    "image": "vmplane/test-guest:latest",
                                    "kernelPath": "/vmlinuz",
                                    "initrdPath": "/initrd.img",
                                },
                            }
                        },
                        "devices": {},
                    },
                }
            },
        },
    }


@dataclass
class Api:
    url: str
    token: str
    http: urllib3.PoolManager

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        data = json.dumps(body).encode() if body is not None else None
        response = self.http.request(method, self.url + path, body=data, headers=headers, timeout=30)
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {response.data[:300]!r}")
        return json.loads(response.data) if response.data else None


def start_serve(data_dir: Path, guest_dir: Path) -> tuple[subprocess.Popen[bytes], Api]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmplane.cli.main",
            "serve",
            "--data-dir",
            str(data_dir),
            "--guest-dir",
            str(guest_dir),
            "--listen",
            "127.0.0.1:0",
            "--hypervisor",
            "qemu",
            "--accel",
            "tcg",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=(data_dir.parent / "serve.log").open("ab"),
    )
    assert process.stdout is not None
    deadline, buffer = time.monotonic() + 30, b""
    while b"\n" not in buffer:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("vmplane serve did not start (see serve.log)")
        if select.select([process.stdout], [], [], 0.2)[0]:
            buffer += os.read(process.stdout.fileno(), 4096)
    config = yaml.safe_load(
        Path(buffer.split(b"kubeconfig:", 1)[1].split(b"\n", 1)[0].strip().decode()).read_text()
    )
    http = urllib3.PoolManager(
        ca_certs=str(data_dir / "tls" / "ca.crt"), cert_reqs="CERT_REQUIRED", retries=False
    )
    api = Api(config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"], http)
    return process, api


class VmiWatch:
    """One watch on the namespace's VMIs; each event is queued with the time its line arrived."""

    def __init__(self, api: Api) -> None:
        listing = api.request("GET", VMIS)
        self._response = api.http.request(
            "GET",
            f"{api.url}{VMIS}?watch=1&resourceVersion={listing['metadata']['resourceVersion']}",
            headers={"Authorization": f"Bearer {api.token}"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=None),
        )
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        with contextlib.suppress(Exception):
            for line in self._lines():
                self.events.put((time.perf_counter(), json.loads(line)["object"]))

    def _lines(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self._response.stream(65536, decode_content=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield line

    def wait(self, name: str, sockets: int, timeout: float) -> tuple[float, float]:
        """Arrival times of the first event of ``name`` whose spec asks for ``sockets`` sockets (the VM
        controller's write) and of the first whose status shows them (the agent's)."""
        deadline = time.monotonic() + timeout
        asked: float | None = None
        while True:
            arrived, obj = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if obj["metadata"]["name"] != name:
                continue
            if asked is None and obj["spec"]["domain"]["cpu"]["sockets"] == sockets:
                asked = arrived
            topology = (obj.get("status") or {}).get("currentCPUTopology") or {}
            if asked is not None and topology.get("sockets") == sockets:
                return asked, arrived

    def close(self) -> None:
        # Closing a TLS connection another thread is reading deadlocks; shutting the socket down ends
        # the reader's read instead.
        self._response.shutdown()


def wait_for_guests(api: Api, names: list[str]) -> None:
    """Until each guest printed a status line (polled through the console subresource, bounded)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    pending = set(names)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"guests not booted within {BOOT_TIMEOUT}s: {sorted(pending)}")
        for name in list(pending):
            path = (
                f"/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/{name}/console"
            )
            response = api.http.request(
                "GET", api.url + path, headers={"Authorization": f"Bearer {api.token}"}, timeout=10
            )
            if response.status == 200 and b"VMPLANE-STATUS" in response.data:
                pending.discard(name)
        time.sleep(0.5)


@dataclass
class EndToEnd:
    """Seconds per change: PATCH sent/accepted -> VMI status, and the two halves of the path."""

    from_send: list[float]
    from_accept: list[float]
    to_vmi_spec: list[float]  # PATCH accepted -> VMI spec changed (API, VM controller, planner)
    to_status: list[float]  # VMI spec changed -> VMI status shows it (node agent: QMP, observe, write)


def end_to_end(api: Api, sockets: dict[str, int], changes: int) -> EndToEnd:
    """``changes`` PATCHes (sockets +1, round-robin); ``sockets`` holds each VM's count and is updated."""
    names = list(sockets)
    watch = VmiWatch(api)
    result = EndToEnd([], [], [], [])
    try:
        for i in range(changes):
            name = names[i % len(names)]
            sockets[name] += 1
            body = {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": sockets[name]}}}}}}
            sent = time.perf_counter()
            api.request("PATCH", f"{VMS}/{name}", body, "application/merge-patch+json")
            accepted = time.perf_counter()
            asked, seen = watch.wait(name, sockets[name], CHANGE_TIMEOUT)
            result.from_send.append(seen - sent)
            result.from_accept.append(seen - accepted)
            result.to_vmi_spec.append(asked - accepted)
            result.to_status.append(seen - asked)
    finally:
        watch.close()
    return result


_APPLIED = re.compile(r"domain\.cpu\.sockets: \d+ -> \d+ in (\d+) ?ms")


def agent_hotplug_times(api: Api, names: list[str]) -> list[float]:
    """The agent's own timing of each vCPU hotplug (``set_sockets``), from its HotplugApplied events."""
    events = api.request("GET", "/api/v1/namespaces/default/events")["items"]
    return [
        int(match.group(1)) / 1000
        for event in events
        if event.get("reason") == "HotplugApplied"
        and event["involvedObject"]["name"] in names
        and (match := _APPLIED.search(event.get("message", ""))) is not None
    ]


async def raw_qmp(sockets: dict[str, int], qmp: dict[str, Path], changes: int) -> list[float]:
    """``changes`` vCPU hotplugs straight over QMP (round-robin); ``sockets`` is updated."""
    names = list(sockets)
    clients = {}
    for name in names:
        client = QMPClient(name)
        await client.connect(str(qmp[name]))
        clients[name] = client
    times: list[float] = []
    try:
        for i in range(changes):
            name = names[i % len(names)]
            client = clients[name]
            slots: list[dict[str, Any]] = await client.execute("query-hotpluggable-cpus")  # type: ignore[assignment]
            free = next(s for s in reversed(slots) if "qom-path" not in s)
            props = free["props"]
            device = {"driver": free["type"], "id": f"raw-s{props['socket-id']}", **props}
            started = time.perf_counter()
            await client.execute("device_add", device)
            await client.execute("query-cpus-fast")
            times.append(time.perf_counter() - started)
            sockets[name] += 1
    finally:
        for client in clients.values():
            await client.disconnect()
    return times


def stop_serve(serve: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the guests keep running), or SIGKILL if it does not end."""
    if serve.poll() is None:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    if serve.stdout is not None:
        serve.stdout.close()


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(value: float) -> str:
    return f"{value * 1000:7.1f} ms"


def install_guest(guest_dir: Path) -> None:
    image = guest_dir / "images" / "vmplane_test-guest_latest"
    image.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(GUEST / name, image / name)


def kill_guests(guest_dir: Path) -> None:
    for pidfile in (guest_dir / "machines").glob("*/qemu/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="live changes (and raw QMP hotplugs)")
    parser.add_argument("--vms", type=int, default=2, help="guests the changes go round-robin over")
    args = parser.parse_args()
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (scripts/ci-install-qemu.sh)", file=sys.stderr)
            return 2
    if not (GUEST / "vmlinuz").is_file():
        print("the test guest is missing: python guest/build.py --out guest/out", file=sys.stderr)
        return 2
    per_vm = -(-args.changes // args.vms)
    max_sockets = 1 + 2 * per_vm  # the end-to-end changes, then as many raw hotplugs
    with tempfile.TemporaryDirectory(prefix="vmplane-bench-") as tmp:
        # QEMU runs as vmplane-qemu when this runs as root: its guest directory must be reachable.
        os.chmod(tmp, 0o711)
        data_dir, guest_dir = Path(tmp) / "data", Path(tmp) / "guests"
        install_guest(guest_dir)
        names = [f"bench-{i}" for i in range(args.vms)]
        sockets = dict.fromkeys(names, 1)
        qmp = {name: guest_dir / "machines" / f"default_{name}" / "qemu" / "qmp.sock" for name in names}
        serve, api = start_serve(data_dir, guest_dir)
        try:
            api.request(
                "PATCH",
                KUBEVIRT,
                {"spec": {"configuration": {"vmRolloutStrategy": "LiveUpdate"}}},
                "application/merge-patch+json",
            )
            for name in names:
                api.request("POST", VMS, vm_manifest(name, max_sockets))
            wait_for_guests(api, names)
            print(f"{len(names)} guests booted; {args.changes} live changes...", file=sys.stderr)
            e2e = end_to_end(api, sockets, args.changes)
            e2e_to = dict(sockets)
            agent = agent_hotplug_times(api, names)
            # Raw QMP comes after: vmplane serve must let go of the sockets (a QMP socket serves one
            # client), and the control plane must not see vCPUs it did not plug (it would try to
            # converge). So the raw samples are taken at higher vCPU counts than the end-to-end ones.
            stop_serve(serve)
            raw = asyncio.run(raw_qmp(sockets, qmp, args.changes))
        finally:
            stop_serve(serve)
            kill_guests(guest_dir)

    print(
        f"{args.changes} live vCPU hotplugs (sockets +1) round-robin over {args.vms} TCG guests, "
        f"vCPUs 1-{max(e2e_to.values())}; raw QMP: {args.changes} device_add on the same QEMUs "
        f"afterwards, vCPUs {min(e2e_to.values())}-{max(sockets.values())}"
    )
    print(f"{'':38} {'p50':>10} {'p99':>10}")
    rows = [
        ("end to end, PATCH sent -> VMI status", e2e.from_send),
        ("end to end, PATCH accepted -> status", e2e.from_accept),
        ("  accepted -> VMI spec (VM controller)", e2e.to_vmi_spec),
        ("  VMI spec -> VMI status (node agent)", e2e.to_status),
        ("  agent's set_sockets (QMP), events", agent),
        ("raw QMP device_add + query-cpus-fast", raw),
    ]
    for label, values in rows:
        if len(values) >= 2:
            print(f"{label:38} {ms(percentile(values, 50)):>10} {ms(percentile(values, 99)):>10}")
    ratio50 = percentile(e2e.from_send, 50) / percentile(raw, 50)
    ratio99 = percentile(e2e.from_send, 99) / percentile(raw, 99)
    verdict = "PASS" if ratio50 <= 5 else "FAIL"
    inside = percentile(e2e.from_send, 50) / percentile(agent, 50) if len(agent) >= 2 else float("nan")
    print(
        f"end to end (from send) / raw QMP: p50 {ratio50:.1f}x, p99 {ratio99:.1f}x "
        f"(goal: p50 <= 5x) -> {verdict}"
    )
    print(
        f"end to end (from send) / the agent's own QMP time at the same moments: p50 {inside:.1f}x "
        "(set_sockets = query-hotpluggable-cpus + device_add, without query-cpus-fast)"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
