"""A real guest on an agent that is its own process: ``vmplane apiserver``, ``vmplane controller`` and
``vmplane agent --hypervisor qemu`` (node02) as separate processes. The API server reads the guest's
console from the agent (which serves it to the API server alone); under LiveUpdate a vCPU is
hotplugged into the running QEMU and the agent reports it from QEMU's own answer. The API server asks
the guest agent of a guest on node02 through that agent too.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes import client, config
from plane_support import (
    GUEST_IMAGE,
    SCRATCH_IMAGE,
    Cluster,
    guest_cmdline,
    install_images,
    kill_recorded_guests,
    reachable_dir,
)

from vmplane.api.node_annotations import CONSOLE_CERT_SHA256, CONSOLE_ENDPOINT
from vmplane.cli.dev_cluster import LocalCluster
from vmplane.client.config import read_kubeconfig

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


def console_log(guests: Path) -> bytes:
    (log,) = (guests / "node02" / "machines").glob("*/qemu/console.log")
    return log.read_bytes()


def check_console(local: LocalCluster, cluster: Cluster) -> None:
    """The console read through the API server is the log the agent's QEMU writes on its host, and
    the agent's console server refuses anyone but the API server (here: the admin's own token)."""
    assert local.guest_root is not None
    path = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/remote/console"
    deadline = time.monotonic() + BOOT
    body = b""
    while not body and time.monotonic() < deadline:
        response = cluster.api.call_api(
            path, "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
        )
        body = response.data
        time.sleep(0.5)
    assert body, "the guest wrote nothing to its console"
    assert console_log(local.guest_root).startswith(body)
    node = client.CoreV1Api(cluster.api).read_node("node02")
    endpoint = node.metadata.annotations[CONSOLE_ENDPOINT]
    digest = node.metadata.annotations[CONSOLE_CERT_SHA256]
    assert local.admin_kubeconfig is not None
    admin = read_kubeconfig(local.admin_kubeconfig)

    async def direct() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{endpoint}/consoles/default/remote",
                headers={"Authorization": f"Bearer {admin.token}"},
                ssl=aiohttp.Fingerprint(bytes.fromhex(digest)),
            ) as answer,
        ):
            return answer.status

    assert asyncio.run(direct()) == 403


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
        kill_recorded_guests(guests)
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
        check_console(local, cluster)
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


def test_guestosinfo_reaches_the_guest_agent_on_the_vmis_node(local: LocalCluster) -> None:
    cluster = api(local)
    name = "remote-agent"
    try:
        cluster.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm(name)
        )
        connected = cluster.wait(
            "virtualmachineinstances",
            name,
            lambda o: any(
                c.get("type") == "AgentConnected"
                for c in ((o or {}).get("status") or {}).get("conditions") or []
            ),
            BOOT,
        )
        assert connected is not None
        path = (
            f"/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/{name}/guestosinfo"
        )
        response = cluster.api.call_api(
            path, "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
        )
        assert json.loads(response.data)["hostname"] == "vmplane-guest"
    finally:
        cluster.custom.delete_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", name
        )
        cluster.api.close()
