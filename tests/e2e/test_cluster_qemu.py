"""A real guest on an agent that is its own process: ``vmplane apiserver``, ``vmplane controller`` and
``vmplane agent --hypervisor qemu`` (node02) as separate processes; under LiveUpdate a vCPU is
hotplugged into the running QEMU and the agent reports it from QEMU's own answer.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import config
from plane_support import GUEST_IMAGE, SCRATCH_IMAGE, Cluster, guest_cmdline, install_images, reachable_dir

from vmplane.cli.dev_cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.timeout(400)]
GROUP, VERSION = "kubevirt.io", "v1"
BOOT = 240.0
HOTPLUG = 120.0


def vm(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        f"""
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      terminationGracePeriodSeconds: 0
      nodeSelector: {{kubernetes.io/hostname: node02}}
      domain:
        cpu: {{sockets: 1, maxSockets: 4}}
        memory: {{guest: 512Mi}}
        firmware:
          kernelBoot:
            kernelArgs: "{guest_cmdline()}"
            container: {{image: {GUEST_IMAGE}, kernelPath: /vmlinuz, initrdPath: /initrd.img}}
        devices:
          disks:
          - {{name: scratch, disk: {{bus: virtio}}}}
      volumes:
      - {{name: scratch, containerDisk: {{image: "{SCRATCH_IMAGE}"}}}}
"""
    )
    return manifest


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    guests = reachable_dir("vmplane-cluster-guests-")
    install_images(guests / "node02")
    cluster = LocalCluster(root=tmp_path_factory.mktemp("qemu-cluster"), hypervisor="qemu", guest_root=guests)
    try:
        cluster.start(controllers=1, nodes=("node02",))
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(guests, ignore_errors=True)


def api(local: LocalCluster) -> Cluster:
    assert local.admin_kubeconfig is not None
    client = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    client.set_default_header("Connection", "close")
    return Cluster(client)


def test_a_vcpu_is_hotplugged_into_a_qemu_guest_run_by_another_process(local: LocalCluster) -> None:
    cluster = api(local)
    try:
        cluster.set_strategy("LiveUpdate")
        cluster.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm("remote")
        )
        running = cluster.wait(
            "virtualmachineinstances",
            "remote",
            lambda o: ((o or {}).get("status") or {}).get("phase") == "Running",
            BOOT,
        )
        assert running is not None
        assert running["status"]["nodeName"] == "node02"
        patch = {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}}
        cluster.custom.patch_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", "remote", patch
        )
        hotplugged = cluster.wait(
            "virtualmachineinstances",
            "remote",
            lambda o: ((o or {}).get("status") or {}).get("currentCPUTopology", {}).get("sockets") == 2,
            HOTPLUG,
        )
        assert hotplugged is not None
        assert hotplugged["metadata"]["uid"] == running["metadata"]["uid"]  # the same guest, changed live
    finally:
        cluster.api.close()
