"""The user guide's VM with an empty CD-ROM drive (a ``cdrom`` disk with no volume) boots on real QEMU
instead of crash-looping, with the drive present and no medium in it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from plane_support import ConsoleFollower, Plane, install_images, phase, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(300)]

VM = "cdrom"
BOOT = 120.0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("plane")
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


def test_vm_with_an_empty_cdrom_boots(plane: Plane) -> None:
    vm = vm_manifest(VM, host_disk=plane.guest_dir / "hostdisks" / "cdrom.img")
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"].append(
        {"name": "cdrom", "cdrom": {"bus": "sata"}}
    )
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(vm))
    cluster = plane.cluster()
    cluster.wait("virtualmachineinstances", VM, lambda o: phase(o) == "Running", BOOT)
    console = ConsoleFollower(plane, VM).start()
    try:
        status = console.wait(lambda s: True, BOOT)
    finally:
        console.stop()
    assert status["vcpus"] == "1"
