"""Operating a real guest (``vmplane serve --hypervisor qemu --accel tcg``): pause, unpause, reset,
the interactive serial console and VNC.

The test guest prints a status line with its uptime every second on its serial console, which
``vmplane console --follow`` streams: a paused guest prints nothing, an unpaused one goes on from the
uptime it had (QEMU's virtual clock stops with the vCPUs), and a reset one starts again from zero,
in the same VMI and the same QEMU process. The test guest runs a shell on its serial port, which
``vmplane console`` reaches through the API's websocket; ``vmplane vnc`` serves QEMU's VNC (a unix
socket in the run directory) on a local port.
"""

from __future__ import annotations

import json
import queue
import select
import socket
import subprocess
import sys
import time
import urllib.request
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
    # The VMI may not exist yet (the VM controller creates it), and kubectl waits on a missing object
    # only with --for=create.
    plane.kubectl("wait", "vmi", NAME, "--for=create", f"--timeout={BOOT:.0f}s")
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
    # A reboot under a loaded TCG host can take as long as two first boots (firmware and kernel again).
    rebooted = console.wait(lambda status: float(status["uptime"]) < up, 2 * BOOT)
    assert float(rebooted["uptime"]) < up
    after = cluster.get("virtualmachineinstances", NAME)
    assert (uid(after), after["status"]["phase"], plane.qemu_pid("default", NAME)) == (
        uid(vmi),
        "Running",
        pid,
    )


def _read_until(process: subprocess.Popen[bytes], wanted: bytes, timeout: float) -> bytes:
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{wanted!r} not seen; got {seen[-400:]!r}"
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if readable:
            chunk = process.stdout.read1(4096)
            assert chunk, f"the stream ended before {wanted!r}; got {seen[-400:]!r}"
            seen += chunk
    return seen


def _cli(plane: Plane, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmplane.cli.main", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=plane.env(),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=10)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def test_the_console_runs_what_is_typed_and_ctrl_close_bracket_leaves(
    plane: Plane, console: ConsoleFollower
) -> None:
    session = _cli(plane, "console", NAME)
    try:
        assert session.stdin is not None
        session.stdin.write(b"echo vmplane-$((6*7))\n")
        session.stdin.flush()
        _read_until(session, b"vmplane-42", 60)  # the shell's answer, not the echoed command line
        session.stdin.write(b"\x1d")
        session.stdin.flush()
        assert session.wait(timeout=20) == 0
    finally:
        _stop(session)


def test_vnc_answers_with_the_rfb_handshake_on_a_local_port(plane: Plane, console: ConsoleFollower) -> None:
    proxy = _cli(plane, "vnc", NAME)
    try:
        banner = _read_until(proxy, b"(Ctrl-C to stop)", 30).decode()
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as viewer:
            greeting = b""
            while len(greeting) < 12:
                chunk = viewer.recv(12 - len(greeting))
                assert chunk, f"the proxy closed after {greeting!r}"
                greeting += chunk
        assert greeting == b"RFB 003.008\n"
    finally:
        _stop(proxy)


def test_port_forward_reaches_the_guests_web_server_from_a_local_port(
    plane: Plane, console: ConsoleFollower
) -> None:
    forward = _cli(plane, "port-forward", f"vm/{NAME}", "0:80")
    try:
        banner = _read_until(forward, b"-> 80", 30).decode()
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:
            assert answer.read() == b"vmplane-guest\n"
    finally:
        _stop(forward)


def test_port_forward_stdio_tunnels_a_request_as_sshs_proxy_command_does(
    plane: Plane, console: ConsoleFollower
) -> None:
    tunnel = subprocess.run(
        [sys.executable, "-m", "vmplane.cli.main", "port-forward", "--stdio", f"vmi/{NAME}", "80"],
        input=b"GET / HTTP/1.0\r\n\r\n",
        capture_output=True,
        timeout=60,
        env=plane.env(),
        check=False,
    )
    assert tunnel.returncode == 0, tunnel.stderr
    assert tunnel.stdout.startswith(b"HTTP/1.")
    assert tunnel.stdout.endswith(b"vmplane-guest\n")


def test_soft_reboot_makes_the_guest_reboot_itself_in_the_same_vmi(
    plane: Plane, console: ConsoleFollower
) -> None:
    cluster = plane.cluster()
    vmi = cluster.get("virtualmachineinstances", NAME)
    up = float(console.wait(lambda status: float(status["uptime"]) > 3.0, 60)["uptime"])

    assert plane.vmplane("soft-reboot", "vm", NAME).returncode == 0
    # Ctrl-Alt-Delete: the test guest's init (a shell script) leaves it to the kernel, which restarts.
    console.wait(lambda status: float(status["uptime"]) < up, 2 * BOOT)
    after = cluster.get("virtualmachineinstances", NAME)
    assert (uid(after), after["status"]["phase"]) == (uid(vmi), "Running")
