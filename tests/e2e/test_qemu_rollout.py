"""Real guests through the control plane: ``vmplane serve --hypervisor qemu --accel tcg``, kubectl and
the kubernetes client on one side, the test guest's own status lines on the other.

One VM lives through the module, in file order: it boots by ``firmware.kernelBoot`` from the local
image directory with a containerDisk overlay, an emptyDisk, a NoCloud seed and a hostDisk; under
LiveUpdate it gets a vCPU, memory, a hotpluggable PVC and a bridge NIC in place; under Stage the same
kinds of change wait for ``vmplane restart``; a restart of ``vmplane serve`` leaves the guest running
and a live change afterwards still works; ``kill -9`` of its QEMU fails the VMI and ``runStrategy:
Always`` boots a new one. Guest state is read from ``vmplane console --follow``.

Timings are printed as ``TIMING`` lines (run with ``-s`` to see them).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from plane_support import (
    Cluster,
    ConsoleFollower,
    Plane,
    add_disk_patch,
    add_nic_patch,
    condition,
    install_images,
    listed,
    phase,
    uid,
    vm_manifest,
)

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl")]

VM = "guest"
BOOT = 120.0  # TCG boots the test guest in 4-15 s alone; CI machines are slower and shared
CHANGE = 20.0  # a hotplug reaches status and guest in about a second
KiB_PER_MiB = 1024


def timing(what: str, seconds: float) -> None:
    print(f"TIMING {what}: {seconds * 1000:.0f} ms")


@dataclass
class Env:
    plane: Plane
    cluster: Cluster
    console: ConsoleFollower
    base_image: Path
    base_digest: str

    def follow(self) -> None:
        """Follow the console of the VM's current VMI (after a restart, a new machine)."""
        self.console.stop()
        self.console = ConsoleFollower(self.plane, VM).start()

    def reconnect(self) -> None:
        self.cluster = self.plane.cluster()

    def patch(self, body: Any, kind: str = "merge") -> None:
        self.plane.kubectl("patch", "vm", VM, "--type", kind, "-p", json.dumps(body))

    def vmi(self) -> dict[str, Any]:
        return self.cluster.get("virtualmachineinstances", VM)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("plane")
    data_dir = tmp / "data"
    (tmp / "home").mkdir()
    plane = Plane(data_dir=data_dir, home=tmp / "home", extra_args=("--crash-backoff", "0.5"))
    base = install_images(plane.guest_dir)
    plane.start()
    env = Env(plane, plane.cluster(), ConsoleFollower(plane, VM), base, digest(base))
    try:
        yield env
    finally:
        env.console.stop()
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def test_admission_confines_host_paths(env: Env) -> None:
    bad = vm_manifest("escape", host_disk=Path("/etc/passwd"))
    bad["spec"]["template"]["spec"]["volumes"][0]["containerDisk"]["image"] = ".."
    out = env.plane.kubectl_result("apply", "-f", "-", stdin=json.dumps(bad))
    assert out.returncode != 0
    assert "spec.template.spec.volumes[0].containerDisk.image: Invalid value: '..'" in out.stderr
    assert "spec.template.spec.volumes[3].hostDisk.path: Invalid value: '/etc/passwd'" in out.stderr
    assert "must lie under one of the host disk directories" in out.stderr


def test_boots_from_the_image_directory(env: Env) -> None:
    env.cluster.set_strategy("LiveUpdate")
    host_disk = env.plane.guest_dir / "hostdisks" / "guest.img"
    started = time.monotonic()
    env.plane.kubectl("apply", "-f", "-", stdin=json.dumps(vm_manifest(VM, host_disk=host_disk)))
    env.cluster.wait("virtualmachineinstances", VM, lambda o: phase(o) == "Running", BOOT)
    timing("apply to VMI Running", time.monotonic() - started)
    env.follow()
    status = env.console.wait(lambda s: True, BOOT)
    timing("apply to first guest status line", time.monotonic() - started)
    assert status["vcpus"] == "1"
    assert listed(status, "blk") == ["vda", "vdb", "vdc", "vdd"]
    assert listed(status, "net") == ["eth0"]
    assert host_disk.stat().st_size == 16 << 20
    vmi_dir = env.plane.guest_dir / "volumes" / "default" / "vmis" / VM
    assert sorted(p.name for p in vmi_dir.iterdir() if not p.name.startswith(".")) == [
        "empty.qcow2",
        "scratch.overlay.qcow2",
        "seed.cidata.iso",
    ]


def test_live_update_cpu(env: Env) -> None:
    started = time.monotonic()
    env.patch({"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}})
    vmi = env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: ((o or {}).get("status") or {}).get("currentCPUTopology", {}).get("sockets") == 2,
        CHANGE,
    )
    timing("LiveUpdate sockets 1->2: PATCH to VMI status", time.monotonic() - started)
    env.console.wait(lambda s: s["vcpus"] == "2", CHANGE)
    timing("LiveUpdate sockets 1->2: PATCH to guest", time.monotonic() - started)
    assert vmi is not None
    assert vmi["spec"]["domain"]["cpu"]["sockets"] == 2


def test_live_update_memory(env: Env) -> None:
    before = int(env.console.statuses[-1]["memtotal_kb"])
    started = time.monotonic()
    env.patch({"spec": {"template": {"spec": {"domain": {"memory": {"guest": "1280Mi"}}}}}})
    vmi = env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: ((o or {}).get("status") or {}).get("memory", {}).get("guestCurrent") == "1280Mi",
        CHANGE,
    )
    timing("LiveUpdate memory 1Gi->1280Mi: PATCH to VMI status", time.monotonic() - started)
    grown = env.console.wait(lambda s: int(s["memtotal_kb"]) > before, CHANGE)
    timing("LiveUpdate memory 1Gi->1280Mi: PATCH to guest", time.monotonic() - started)
    assert vmi is not None
    memory = vmi["status"]["memory"]
    assert (memory["guestAtBoot"], memory["guestRequested"]) == ("1Gi", "1280Mi")
    # QEMU's plugged DIMM is what the guest got: MemTotal grows by exactly guestCurrent - guestAtBoot.
    assert int(grown["memtotal_kb"]) - before == 256 * KiB_PER_MiB


def test_live_update_hotpluggable_disk(env: Env) -> None:
    before = listed(env.console.statuses[-1], "blk")
    started = time.monotonic()
    env.patch(add_disk_patch("data", "data-pvc"), kind="json")
    env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: any(
            v["name"] == "data" and v.get("phase") == "Ready"
            for v in ((o or {}).get("status") or {}).get("volumeStatus") or []
        ),
        CHANGE,
    )
    timing("LiveUpdate add PVC disk: PATCH to VMI status", time.monotonic() - started)
    status = env.console.wait(lambda s: len(listed(s, "blk")) == len(before) + 1, CHANGE)
    timing("LiveUpdate add PVC disk: PATCH to guest", time.monotonic() - started)
    assert set(before) < set(listed(status, "blk"))
    assert (env.plane.guest_dir / "volumes" / "default" / "claims" / "data-pvc.qcow2").is_file()


def test_live_update_nic(env: Env) -> None:
    started = time.monotonic()
    env.patch(add_nic_patch("secondary", "br-net"), kind="json")
    env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: any(
            i["name"] == "secondary" for i in ((o or {}).get("status") or {}).get("interfaces") or []
        ),
        CHANGE,
    )
    timing("LiveUpdate add bridge NIC: PATCH to VMI status", time.monotonic() - started)
    env.console.wait(lambda s: listed(s, "net") == ["eth0", "eth1"] and "eth1:1" in s["carrier"], CHANGE)
    timing("LiveUpdate add bridge NIC: PATCH to guest", time.monotonic() - started)
    vm = env.cluster.get("virtualmachines", VM)
    assert condition(vm, "RestartRequired") is None


def test_stage_keeps_changes_pending_until_restart(env: Env) -> None:
    env.cluster.set_strategy("Stage")
    seen = env.console.statuses[-1]
    first_uid = uid(env.vmi())
    env.patch(
        {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 3}, "memory": {"guest": "1536Mi"}}}}}}
    )
    env.patch(add_disk_patch("data2", "data2-pvc") + add_nic_patch("third", "br-net"), kind="json")
    vm = env.cluster.wait(
        "virtualmachines",
        VM,
        lambda o: len(((o or {}).get("status") or {}).get("pendingChanges") or []) >= 4,
        CHANGE,
    )
    required = condition(vm, "RestartRequired")
    assert required is not None
    assert required["status"] == "True"
    # Two status lines written after the VM reported its pending changes: the guest saw none of them.
    for _ in range(2):
        unchanged = env.console.wait(lambda s: True, CHANGE)
    for key in ("vcpus", "memtotal_kb", "blk", "net"):
        assert unchanged[key] == seen[key], key
    assert env.vmi()["spec"]["domain"]["cpu"]["sockets"] == 2

    started = time.monotonic()
    restart = env.plane.vmplane("restart", VM)
    assert restart.returncode == 0, restart.stderr
    env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: uid(o) not in (None, first_uid) and phase(o) == "Running",
        BOOT,
    )
    timing("restart to new VMI Running", time.monotonic() - started)
    env.follow()
    status = env.console.wait(lambda s: True, BOOT)
    timing("restart to first guest status line", time.monotonic() - started)
    assert status["vcpus"] == "3"
    assert int(status["memtotal_kb"]) > int(seen["memtotal_kb"])
    assert len(listed(status, "blk")) == len(listed(seen, "blk")) + 1
    assert listed(status, "net") == ["eth0", "eth1", "eth2"]
    vm = env.cluster.wait("virtualmachines", VM, lambda o: condition(o, "RestartRequired") is None, CHANGE)
    assert vm is not None
    assert not vm["status"].get("pendingChanges")
    assert digest(env.base_image) == env.base_digest  # the containerDisk base was never written


def test_restarting_the_control_plane_keeps_the_guest(env: Env) -> None:
    env.cluster.set_strategy("LiveUpdate")
    pid = env.plane.qemu_pid("default", VM)
    vmi_uid = uid(env.vmi())
    uptime = float(env.console.wait(lambda s: True, CHANGE)["uptime"])
    started = time.monotonic()
    assert env.plane.stop() == 0
    os.kill(pid, 0)  # QEMU outlived the control plane
    env.plane.start()
    env.reconnect()
    timing("vmplane serve stop + start", time.monotonic() - started)
    env.follow()
    status = env.console.wait(lambda s: float(s["uptime"]) > uptime, CHANGE)
    assert env.plane.qemu_pid("default", VM) == pid
    vmi = env.vmi()
    assert (uid(vmi), phase(vmi)) == (vmi_uid, "Running")

    started = time.monotonic()
    env.patch({"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 4}}}}}})
    env.console.wait(lambda s: s["vcpus"] == "4", CHANGE)
    timing("LiveUpdate after re-adoption: PATCH to guest", time.monotonic() - started)
    assert float(env.console.statuses[-1]["uptime"]) > float(status["uptime"])
    assert env.vmi()["status"]["currentCPUTopology"]["sockets"] == 4


def test_killed_qemu_fails_the_vmi_and_a_new_one_boots(env: Env) -> None:
    pid = env.plane.qemu_pid("default", VM)
    old_uid = uid(env.vmi())
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    failed = env.cluster.wait(
        "virtualmachineinstances",
        VM,
        lambda o: o is None or uid(o) != old_uid or phase(o) == "Failed",
        CHANGE,
    )
    elapsed = time.monotonic() - started
    timing("kill -9 to VMI Failed", elapsed)
    assert elapsed < 2.0  # issue 5: crash detection within 2 seconds
    if failed is not None and uid(failed) == old_uid:
        # Adopted after the restart above, QEMU is no child of this serve: its exit status is unknown.
        assert (failed["status"].get("reason") or "").startswith("QEMU")
    env.cluster.wait(
        "virtualmachineinstances", VM, lambda o: uid(o) not in (None, old_uid) and phase(o) == "Running", BOOT
    )
    timing("kill -9 to new VMI Running", time.monotonic() - started)
    env.follow()
    status = env.console.wait(lambda s: True, BOOT)
    timing("kill -9 to new guest's first status line", time.monotonic() - started)
    assert status["vcpus"] == "4"
    assert env.plane.qemu_pid("default", VM) != pid
