"""The user guide's VM with an empty CD-ROM drive (a ``cdrom`` disk with no volume) on real QEMU: it
boots instead of crash-looping, with the drive present and no medium in it; under ``LiveUpdate`` a
medium is inserted, changed and ejected in place (QMP's tray commands) and the guest sees each; a
``scsi`` disk hot-plugged through ``vmplane addvolume --persist`` reaches the guest on its virtio-scsi
controller. The tests run in order on one VM and its console."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from plane_support import ConsoleFollower, Plane, install_images, listed, phase, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(300)]

VM = "cdrom"
BOOT = 120.0
CHANGE = 60.0
#: The claims' sizes in MiB (the agent makes each a sparse qcow2 of that size); the guest reports a
#: medium's size in 512-byte sectors, so the media are told apart.
MEDIA = {"iso-a": 64, "iso-b": 32}
CD_VOLUME = "/spec/template/spec/volumes/4"  # after vm_manifest's four volumes


def medium(claim: str) -> str:
    return f"sr0:{MEDIA[claim] * 1024 * 1024 // 512}"


@dataclass
class Env:
    plane: Plane
    console: ConsoleFollower

    def patch(self, body: Any) -> None:
        self.plane.kubectl("patch", "vm", VM, "--type", "json", "-p", json.dumps(body))

    def volume_status(self) -> dict[str, Any]:
        vmi = json.loads(self.plane.kubectl("get", "vmi", VM, "-o", "json"))
        return {v["name"]: v for v in vmi.get("status", {}).get("volumeStatus") or ()}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("plane")
    (tmp / "home").mkdir()
    plane = Plane(data_dir=tmp / "data", home=tmp / "home")
    install_images(plane.guest_dir)
    plane.start()
    console: ConsoleFollower | None = None
    try:
        vm = vm_manifest(VM, host_disk=plane.guest_dir / "hostdisks" / "cdrom.img")
        vm["spec"]["template"]["metadata"] = {
            "annotations": {f"claims.vmplane.io/{claim}": f"{size}Mi" for claim, size in MEDIA.items()}
        }
        vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"].append(
            {"name": "cdrom", "cdrom": {"bus": "sata"}}
        )
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(vm))
        plane.cluster().wait("virtualmachineinstances", VM, lambda o: phase(o) == "Running", BOOT)
        console = ConsoleFollower(plane, VM).start()
        yield Env(plane, console)
    finally:
        if console is not None:
            console.stop()
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def test_vm_with_an_empty_cdrom_boots_with_the_drive_empty(env: Env) -> None:
    status = env.console.wait(lambda s: "sr0" in listed(s, "blk"), BOOT)
    assert status["media"] == "sr0:-"
    assert "cdrom" not in env.volume_status()


def test_a_medium_inserted_under_live_update_is_seen_by_the_guest(env: Env) -> None:
    env.plane.cluster().set_strategy("LiveUpdate")
    volume = {"name": "cdrom", "persistentVolumeClaim": {"claimName": "iso-a", "hotpluggable": True}}
    started = time.monotonic()
    env.patch([{"op": "add", "path": "/spec/template/spec/volumes/-", "value": volume}])
    env.console.wait(lambda s: s["media"] == medium("iso-a"), CHANGE)
    print(f"CD-ROM insert: PATCH to guest {time.monotonic() - started:.2f}s")
    assert env.volume_status()["cdrom"]["phase"] == "Ready"
    # The agent made the claim's image on the host before it went into the drive.
    assert (env.plane.guest_dir / "volumes" / "default" / "claims" / "iso-a.qcow2").is_file()


def test_a_changed_medium_is_seen_by_the_guest(env: Env) -> None:
    env.patch([{"op": "replace", "path": f"{CD_VOLUME}/persistentVolumeClaim/claimName", "value": "iso-b"}])
    env.console.wait(lambda s: s["media"] == medium("iso-b"), CHANGE)
    vm = json.loads(env.plane.kubectl("get", "vm", VM, "-o", "json"))
    assert not vm["status"].get("pendingChanges")


def test_an_ejected_medium_leaves_the_guest_an_empty_drive(env: Env) -> None:
    env.patch([{"op": "remove", "path": CD_VOLUME}])
    status = env.console.wait(lambda s: s["media"] == "sr0:-", CHANGE)
    assert "sr0" in listed(status, "blk")  # the drive stays; only its medium went


def test_a_scsi_disk_hotplugged_with_addvolume_is_seen_by_the_guest(env: Env) -> None:
    before = listed(env.console.statuses[-1], "blk")
    assert "sda" not in before
    started = time.monotonic()
    added = env.plane.vmplane("addvolume", VM, "--volume-name", "lun", "--persist")
    assert added.returncode == 0, added.stderr
    status = env.console.wait(lambda s: "sda" in listed(s, "blk"), CHANGE)
    print(f"SCSI hotplug: addvolume to guest {time.monotonic() - started:.2f}s")
    assert set(before) < set(listed(status, "blk"))
    assert env.volume_status()["lun"]["phase"] == "Ready"
