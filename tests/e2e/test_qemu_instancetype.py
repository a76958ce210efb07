"""An instance-type switch on a real guest (``vmplane serve --hypervisor qemu --accel tcg``): under
LiveUpdate, switching ``spec.instancetype.name`` to a bigger instance type hot-plugs the vCPU and the
memory, and the test guest reports both; ``vmplane pending`` then shows nothing, and a switch above
the headroom is pending with ``source: instancetype``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from plane_support import Cluster, ConsoleFollower, Plane, install_images, phase, vm_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu", "kubectl"), pytest.mark.timeout(300)]

VM = "sized"
BOOT = 120.0
CHANGE = 30.0
KiB_PER_MiB = 1024
INSTANCETYPES = """\
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata: {name: e2e-small}
spec: {cpu: {guest: 1}, memory: {guest: 1Gi}}
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata: {name: e2e-medium}
spec: {cpu: {guest: 2}, memory: {guest: 1280Mi}}
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata: {name: e2e-huge}
spec: {cpu: {guest: 16}, memory: {guest: 1280Mi}}
"""


@dataclass
class Env:
    plane: Plane
    cluster: Cluster
    console: ConsoleFollower


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("plane")
    (tmp / "home").mkdir()
    plane = Plane(data_dir=tmp / "data", home=tmp / "home")
    install_images(plane.guest_dir)
    plane.start()
    env = Env(plane, plane.cluster(), ConsoleFollower(plane, VM))
    try:
        yield env
    finally:
        env.console.stop()
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def _switch(env: Env, name: str) -> None:
    env.plane.kubectl(
        "patch", "vm", VM, "--type", "merge", "-p", json.dumps({"spec": {"instancetype": {"name": name}}})
    )


def test_vm_boots_with_its_instancetype_size(env: Env) -> None:
    env.cluster.set_strategy("LiveUpdate")
    env.plane.kubectl("apply", "-f", "-", stdin=INSTANCETYPES)
    vm = vm_manifest(VM, host_disk=env.plane.guest_dir / "hostdisks" / "sized.img")
    domain = vm["spec"]["template"]["spec"]["domain"]
    del domain["cpu"], domain["memory"]
    vm["spec"]["instancetype"] = {"kind": "VirtualMachineInstancetype", "name": "e2e-small"}
    env.plane.kubectl("apply", "-f", "-", stdin=json.dumps(vm))
    env.cluster.wait("virtualmachineinstances", VM, lambda o: phase(o) == "Running", BOOT)
    env.console.stop()
    env.console = ConsoleFollower(env.plane, VM).start()
    assert env.console.wait(lambda s: True, BOOT)["vcpus"] == "1"


def test_switch_under_live_update_hotplugs_cpu_and_memory_into_the_guest(env: Env) -> None:
    before = int(env.console.statuses[-1]["memtotal_kb"])
    _switch(env, "e2e-medium")
    env.console.wait(lambda s: s["vcpus"] == "2", CHANGE)
    grown = env.console.wait(lambda s: int(s["memtotal_kb"]) > before, CHANGE)
    assert int(grown["memtotal_kb"]) - before == 256 * KiB_PER_MiB
    pending = json.loads(env.plane.vmplane("pending", VM, "-o", "json").stdout)["pending"]
    assert pending == []


def test_switch_above_the_headroom_is_pending_from_the_instancetype(env: Env) -> None:
    _switch(env, "e2e-huge")
    vm = env.cluster.wait(
        "virtualmachines", VM, lambda o: bool(((o or {}).get("status") or {}).get("pendingChanges")), CHANGE
    )
    sockets = next(p for p in vm["status"]["pendingChanges"] if p["path"].endswith("domain.cpu.sockets"))
    assert (sockets["running"], sockets["desired"], sockets["source"]) == (2, 16, "instancetype")
    assert env.console.statuses[-1]["vcpus"] == "2"
