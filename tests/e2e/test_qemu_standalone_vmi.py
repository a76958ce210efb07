"""Standalone VMIs on real QEMU: ``vmplane serve --hypervisor qemu --accel tcg`` and kubectl.

A VMI created directly boots the test guest and keeps running until it is deleted, when its QEMU
stops; a VM deleted with ``--cascade=orphan`` leaves its guest running (the same QEMU process), and
a VM created later with the VMI's name adopts that guest instead of booting another.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plane_support import ConsoleFollower, Plane, install_images, phase, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(600)]

BOOT = 120.0  # TCG boots the test guest in 4-15 s alone; CI machines are slower and shared
STILL_RUNNING_FOR = 5.0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("standalone")
    (tmp / "home").mkdir()
    plane = Plane(data_dir=tmp / "data", home=tmp / "home")
    install_images(plane.guest_dir)
    plane.start()
    try:
        yield plane
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def _vm(plane: Plane, name: str) -> dict[str, Any]:
    manifest = vm_manifest(name, host_disk=plane.guest_dir / "hostdisks" / f"{name}.img", memory="256Mi")
    template = manifest["spec"]["template"]["spec"]
    # Only the disks the VMI needs to boot and report: the kernel-booted guest and its scratch disk.
    template["domain"]["devices"]["disks"] = template["domain"]["devices"]["disks"][:1]
    template["volumes"] = template["volumes"][:1]
    return manifest


def _vmi(plane: Plane, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name},
        "spec": copy.deepcopy(_vm(plane, name)["spec"]["template"]["spec"]),
    }


def _get(plane: Plane, kind: str, name: str) -> dict[str, Any] | None:
    done = plane.kubectl_result("get", kind, name, "-o", "json")
    if done.returncode != 0:
        assert "NotFound" in done.stderr, done.stderr
        return None
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _boot(plane: Plane, name: str) -> tuple[dict[str, Any], int]:
    """Wait for the VMI to run and the guest to report on its console; the VMI and its QEMU pid."""
    plane.kubectl("wait", "vmi", name, "--for=jsonpath={.status.phase}=Running", f"--timeout={BOOT:.0f}s")
    console = ConsoleFollower(plane, name).start()
    try:
        console.wait(lambda status: True, BOOT)
    finally:
        console.stop()
    vmi = _get(plane, "vmi", name)
    assert vmi is not None
    return vmi, plane.qemu_pid("default", name)


def _wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"QEMU {pid} still running"
        time.sleep(0.2)


def test_a_standalone_vmi_boots_a_guest_that_runs_until_the_vmi_is_deleted(plane: Plane) -> None:
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(_vmi(plane, "solo")))
    vmi, pid = _boot(plane, "solo")
    time.sleep(STILL_RUNNING_FOR)  # the VM controller deleted standalone VMIs within a second
    again = _get(plane, "vmi", "solo")
    assert again is not None
    assert (again["metadata"]["uid"], phase(again), _alive(pid)) == (vmi["metadata"]["uid"], "Running", True)

    plane.kubectl("delete", "vmi", "solo", "--timeout=60s")
    assert _get(plane, "vmi", "solo") is None
    _wait_gone(pid)


def test_an_orphaned_guest_keeps_running_and_a_later_vm_adopts_it(plane: Plane) -> None:
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(_vm(plane, "kept")))
    vmi, pid = _boot(plane, "kept")

    plane.kubectl("delete", "vm", "kept", "--cascade=orphan", "--timeout=60s")
    time.sleep(STILL_RUNNING_FOR)
    orphan = _get(plane, "vmi", "kept")
    assert orphan is not None
    assert "ownerReferences" not in orphan["metadata"]
    assert (orphan["metadata"]["uid"], phase(orphan), _alive(pid)) == (
        vmi["metadata"]["uid"],
        "Running",
        True,
    )
    assert plane.qemu_pid("default", "kept") == pid

    plane.kubectl("apply", "-f", "-", stdin=json.dumps(_vm(plane, "kept")))
    plane.kubectl("wait", "vm", "kept", "--for=condition=Ready", "--timeout=60s")
    vm = _get(plane, "vm", "kept")
    adopted = _get(plane, "vmi", "kept")
    assert vm is not None
    assert adopted is not None
    assert [r["uid"] for r in adopted["metadata"]["ownerReferences"] if r.get("controller")] == [
        vm["metadata"]["uid"]
    ]
    assert (adopted["metadata"]["uid"], plane.qemu_pid("default", "kept")) == (vmi["metadata"]["uid"], pid)

    plane.kubectl("delete", "vm", "kept", "--timeout=60s")
    _wait_gone(pid)
