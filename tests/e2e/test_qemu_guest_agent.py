"""The guest agent path on a real guest (``vmplane serve --hypervisor qemu --accel tcg``).

The test guest runs ``/bin/qga-stub`` (a busybox stub of qemu-guest-agent, ``guest/build.py``) on the
``org.qemu.guest_agent.0`` channel every VMI gets; the node agent's QEMU driver talks QGA to it over
the channel's unix socket. The VMI shows ``AgentConnected`` and the guest's NIC in
``status.interfaces``; ``guestosinfo``, ``userlist`` and ``filesystemlist`` answer with what the guest
itself read (its os-release, kernel, hostname, mounts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plane_support import Plane, condition, install_images, uid, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(600)]

BOOT = 180.0  # TCG boots the test guest in 4-15 s alone; the agent answers within a poll after
NAME = "agent"
_SUB = f"/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/{NAME}"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("guest-agent")
    (tmp / "home").mkdir()
    plane = Plane(data_dir=tmp / "data", home=tmp / "home")
    install_images(plane.guest_dir)
    plane.start()
    try:
        manifest = vm_manifest(NAME, host_disk=plane.guest_dir / "hostdisks" / f"{NAME}.img", memory="256Mi")
        template = manifest["spec"]["template"]["spec"]
        template["domain"]["devices"]["disks"] = template["domain"]["devices"]["disks"][:1]
        template["volumes"] = template["volumes"][:1]
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        plane.cluster().wait(
            "virtualmachineinstances", NAME, lambda o: condition(o, "AgentConnected") is not None, BOOT
        )
        yield plane
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def _get(plane: Plane, what: str) -> Any:
    return json.loads(plane.kubectl("get", "--raw", f"{_SUB}/{what}"))


def test_the_vmi_shows_agent_connected_while_the_agent_answers(plane: Plane) -> None:
    vmi = plane.cluster().get("virtualmachineinstances", NAME)
    assert (condition(vmi, "AgentConnected") or {}).get("status") == "True"


def test_status_interfaces_lists_the_guests_nic_with_its_address(plane: Plane) -> None:
    vmi = plane.cluster().wait(
        "virtualmachineinstances",
        NAME,
        lambda o: any(i.get("ipAddress") for i in (o or {}).get("status", {}).get("interfaces") or []),
        60,
    )
    assert vmi is not None
    (nic,) = vmi["status"]["interfaces"]
    assert (nic["interfaceName"], nic["ipAddress"], nic["infoSource"]) == (
        "eth0",
        "10.0.2.15",
        "domain, guest-agent",
    )


def test_guestosinfo_answers_with_the_guests_os_release_kernel_and_hostname(plane: Plane) -> None:
    info = _get(plane, "guestosinfo")
    assert (info["hostname"], info["os"]["id"], info["os"]["prettyName"], info["os"]["machine"]) == (
        "vmplane-guest",
        "vmplane-guest",
        "vmplane test guest (busybox)",
        "x86_64",
    )
    assert info["os"]["kernelRelease"].endswith("-amd64")
    assert info["guestAgentVersion"] == "vmplane-qga-stub"


def test_userlist_answers_the_guests_sessions(plane: Plane) -> None:
    # The test guest's serial shell is no login session: the guest reports none.
    assert _get(plane, "userlist") == {"metadata": {}, "items": []}


def test_filesystemlist_answers_the_guests_root_mount(plane: Plane) -> None:
    items = _get(plane, "filesystemlist")["items"]
    root = next(i for i in items if i["mountPoint"] == "/")
    assert (root["fileSystemType"] in ("rootfs", "tmpfs", "ramfs"), root["totalBytes"] >= 0) == (True, True)


def _log(plane: Plane) -> str:
    return plane.vmplane("console", "--log", NAME).stdout


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(1.0)


def test_soft_reboot_goes_through_the_guest_agent(plane: Plane) -> None:
    cluster = plane.cluster()
    before = cluster.get("virtualmachineinstances", NAME)
    boots = _log(plane).count("VMPLANE-BOOTED")
    assert plane.vmplane("soft-reboot", "vm", NAME).returncode == 0
    # The stub writes this line to the serial console just before it reboots the guest.
    _until(lambda: "VMPLANE-QGA guest-shutdown reboot" in _log(plane), 60, "the agent was not asked")
    _until(lambda: _log(plane).count("VMPLANE-BOOTED") > boots, BOOT, "the guest did not boot again")
    after = cluster.wait(
        "virtualmachineinstances", NAME, lambda o: condition(o, "AgentConnected") is not None, BOOT
    )
    assert (uid(after or {}), (after or {})["status"]["phase"]) == (uid(before or {}), "Running")
