"""The test guest restarted by a MaintenanceWindow on real QEMU: a VM with ``Window`` approval and a
staged vCPU change is restarted by the window that selects it, and the new guest sees the vCPU.

``vmplane serve`` runs as its own process on the wall clock, so the window is one open from a minute
ago: it opens as it is created, and nothing waits for a schedule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from plane_support import Cluster, ConsoleFollower, Plane, condition, install_images, phase, uid, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl")]

VM = "windowed"
BOOT = 120.0  # TCG boots the test guest in 4-15 s alone; CI machines are slower and shared
WINDOWS = ("vmplane.io", "v1alpha1", "maintenancewindows")


@pytest.fixture
def plane(tmp_path: Any) -> Iterator[Plane]:
    (tmp_path / "home").mkdir()
    plane = Plane(data_dir=tmp_path / "data", home=tmp_path / "home")
    install_images(plane.guest_dir)
    plane.start()
    try:
        yield plane
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def open_window(now: datetime) -> dict[str, Any]:
    start = now - timedelta(minutes=1)
    return {
        "apiVersion": "vmplane.io/v1alpha1",
        "kind": "MaintenanceWindow",
        "metadata": {"name": "now"},
        "spec": {
            "schedule": {
                "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                "start": start.strftime("%H:%M"),
                "end": (start + timedelta(hours=1)).strftime("%H:%M"),
                "timeZone": "UTC",
            },
            "selector": {"matchLabels": {"maintenance": "weekly"}},
            "maxUnavailable": 1,
            "healthGate": {"timeoutSeconds": int(BOOT)},
        },
    }


def test_the_test_guest_restarts_in_its_window_and_sees_the_pending_change(plane: Plane) -> None:
    cluster: Cluster = plane.cluster()
    manifest = vm_manifest(VM, host_disk=plane.guest_dir / "hostdisks" / f"{VM}.img")
    manifest["metadata"]["labels"] = {"maintenance": "weekly"}
    manifest["metadata"]["annotations"] = {"vmplane.io/restart-approval": "Window"}
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    first = cluster.wait("virtualmachineinstances", VM, lambda o: phase(o) == "Running", BOOT)
    console = ConsoleFollower(plane, VM).start()
    try:
        assert console.wait(lambda s: True, BOOT)["vcpus"] == "1"
    finally:
        console.stop()
    plane.kubectl(
        "patch",
        "vm",
        VM,
        "--type",
        "merge",
        "-p",
        '{"spec":{"template":{"spec":{"domain":{"cpu":{"sockets":2}}}}}}',
    )
    cluster.wait(
        "virtualmachines",
        VM,
        lambda o: (c := condition(o, "RestartScheduled")) is not None
        and c["reason"] == "NoMaintenanceWindow",
        BOOT,
    )
    started = time.monotonic()
    cluster.custom.create_cluster_custom_object(*WINDOWS, open_window(datetime.now(UTC)))
    cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: uid(o) not in (None, uid(first)) and phase(o) == "Running",
        BOOT,
    )
    console = ConsoleFollower(plane, VM).start()
    try:
        assert console.wait(lambda s: True, BOOT)["vcpus"] == "2"
    finally:
        console.stop()
    elapsed = time.monotonic() - started
    print(f"TIMING window open to the new guest's first status line: {elapsed * 1000:.0f} ms")
    deadline = time.monotonic() + BOOT
    run: dict[str, Any] = {}
    while time.monotonic() < deadline and run.get("phase") != "Completed":
        run = (cluster.custom.get_cluster_custom_object(*WINDOWS, "now").get("status") or {}).get("run") or {}
        time.sleep(0.2)
    assert (run.get("phase"), run.get("restarted")) == ("Completed", [f"default/{VM}"])
    vm = cluster.get("virtualmachines", VM)
    assert not vm["status"].get("pendingChanges")
    assert condition(vm, "RestartScheduled") is None
