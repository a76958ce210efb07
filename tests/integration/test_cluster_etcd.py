"""``vmplane dev-cluster --store etcd`` as processes: a 3-member etcd on loopback, two API servers,
two controllers and three agents. With the first API server stopped, kubectl against the second
keeps working and the controllers and agents (clients whose kubeconfig names the second as
fallback) fail over to it: a VM created then is scheduled and runs. Every process is stopped.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmplane.cli.dev_cluster import NODES, LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl", "etcd"), pytest.mark.timeout(240)]

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 256Mi}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/containerdisks/fedora:latest}}}}
      terminationGracePeriodSeconds: 0
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=tmp_path_factory.mktemp("cluster"), store="etcd")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop_all()


def second(local: LocalCluster, into: Path) -> Path:
    """The admin kubeconfig with only its ``server`` changed to the second API server."""
    assert local.admin_kubeconfig is not None
    first, other = local.servers
    into.write_text(local.admin_kubeconfig.read_text().replace(first, other))
    into.chmod(0o600)
    return into


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def within(seconds: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def ready_nodes(kubeconfig: Path) -> set[str]:
    got = kubectl(kubeconfig, "get", "nodes", "-o", "json")
    if got.returncode != 0:
        return set()
    return {
        n["metadata"]["name"]
        for n in json.loads(got.stdout)["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", [])
        )
    }


def vmi_phase(kubeconfig: Path, name: str) -> str:
    got = kubectl(kubeconfig, "get", "vmi", name, "-o", "jsonpath={.status.phase}")
    return got.stdout if got.returncode == 0 else ""


def test_both_api_servers_see_every_agent_register(local: LocalCluster, tmp_path: Path) -> None:
    assert local.admin_kubeconfig is not None
    for kubeconfig in (local.admin_kubeconfig, second(local, tmp_path / "second")):
        assert within(60, lambda k=kubeconfig: ready_nodes(k) == set(NODES)), ready_nodes(kubeconfig)


def test_with_the_first_api_server_stopped_the_cluster_runs_a_new_vm_through_the_second(
    local: LocalCluster, tmp_path: Path
) -> None:
    assert local.admin_kubeconfig is not None
    other = second(local, tmp_path / "second")
    created = kubectl(local.admin_kubeconfig, "create", "-f", "-", stdin=VM.format(name="before"))
    assert created.returncode == 0, created.stderr
    assert within(60, lambda: vmi_phase(other, "before") == "Running")
    assert local.stop("apiserver") == 0
    assert kubectl(other, "get", "vm", "before").returncode == 0
    created = kubectl(other, "create", "-f", "-", stdin=VM.format(name="after"))
    assert created.returncode == 0, created.stderr
    assert within(90, lambda: vmi_phase(other, "after") == "Running"), local.log("controller1")[-3000:]
