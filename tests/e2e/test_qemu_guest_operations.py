"""pause, unpause and reset of a real guest: ``vmplane serve --hypervisor qemu --accel tcg``.

The test guest prints a status line with its uptime every second on its serial console, which
``vmplane console --follow`` streams: a paused guest prints nothing, an unpaused one goes on from the
uptime it had (QEMU's virtual clock stops with the vCPUs), and a reset one starts again from zero,
in the same VMI and the same QEMU process.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator

import pytest
from plane_support import ConsoleFollower, Plane, condition, install_images, uid, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(600)]

BOOT = 120.0  # TCG boots the test guest in 4-15 s alone; CI machines are slower and shared
PAUSED_FOR = 8.0  # longer than two status periods of a loaded TCG guest (~1-3 s each)
NAME = "ops"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("guest-ops")
    (tmp / "home").mkdir()
    plane = Plane(data_dir=tmp / "data", home=tmp / "home")
    install_images(plane.guest_dir)
    plane.start()
    try:
        manifest = vm_manifest(NAME, host_disk=plane.guest_dir / "hostdisks" / f"{NAME}.img", memory="256Mi")
        template = manifest["spec"]["template"]["spec"]
        # Only what the guest needs to boot and report: the kernel-booted guest and its scratch disk.
        template["domain"]["devices"]["disks"] = template["domain"]["devices"]["disks"][:1]
        template["volumes"] = template["volumes"][:1]
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        yield plane
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


@pytest.fixture
def console(plane: Plane) -> Iterator[ConsoleFollower]:
    plane.kubectl("wait", "vmi", NAME, "--for=jsonpath={.status.phase}=Running", f"--timeout={BOOT:.0f}s")
    follower = ConsoleFollower(plane, NAME).start()
    try:
        follower.wait(lambda status: True, BOOT)
        yield follower
    finally:
        follower.stop()


def _drain_statuses(console: ConsoleFollower) -> list[str]:
    lines = []
    while True:
        try:
            line = console.lines.get_nowait()
        except queue.Empty:
            return lines
        if line is not None and line.startswith("VMPLANE-STATUS "):
            lines.append(line)


def test_pause_stops_the_guest_and_unpause_resumes_it_with_the_same_uptime(
    plane: Plane, console: ConsoleFollower
) -> None:
    cluster = plane.cluster()
    assert plane.vmplane("pause", "vm", NAME).returncode == 0
    cluster.wait("virtualmachineinstances", NAME, lambda o: condition(o, "Paused") is not None, 60)
    cluster.wait(
        "virtualmachines", NAME, lambda o: (o or {}).get("status", {}).get("printableStatus") == "Paused", 60
    )
    time.sleep(1.0)  # a line the guest printed just before QEMU stopped it may still be on its way
    before = [float(line.split("uptime=")[1].split()[0]) for line in _drain_statuses(console)]
    last_uptime = before[-1] if before else float(console.statuses[-1]["uptime"])
    time.sleep(PAUSED_FOR)
    assert _drain_statuses(console) == [], "a paused guest printed its status"

    assert plane.vmplane("unpause", "vm", NAME).returncode == 0
    resumed = console.wait(lambda status: True, 60)
    cluster.wait("virtualmachineinstances", NAME, lambda o: condition(o, "Paused") is None, 60)
    # Its clock stood still while paused: it goes on within two status periods (the one the pause
    # cut short and the one it finished after unpause), well under the time it stood still.
    assert 0 <= float(resumed["uptime"]) - last_uptime < PAUSED_FOR


def test_reset_reboots_the_guest_in_the_same_vmi(plane: Plane, console: ConsoleFollower) -> None:
    cluster = plane.cluster()
    vmi = cluster.get("virtualmachineinstances", NAME)
    pid = plane.qemu_pid("default", NAME)
    up = float(console.wait(lambda status: float(status["uptime"]) > 3.0, 60)["uptime"])

    assert plane.vmplane("reset", "vm", NAME).returncode == 0
    rebooted = console.wait(lambda status: float(status["uptime"]) < up, BOOT)
    assert float(rebooted["uptime"]) < up
    after = cluster.get("virtualmachineinstances", NAME)
    assert (uid(after), after["status"]["phase"], plane.qemu_pid("default", NAME)) == (
        uid(vmi),
        "Running",
        pid,
    )
