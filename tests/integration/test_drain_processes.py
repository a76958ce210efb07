"""``vmplane drain`` and ``vmplane uncordon`` as subprocesses against a multi-process LocalCluster
(API server, one controller, agents node01 and node02 on simulated hypervisors): the command talks
HTTPS with the admin kubeconfig and writes the node through the API; a LiveMigrate VM moves to the
other node by the evacuation controller's migration, a VM's VMI with evictionStrategy None is
stopped and its VM starts it again on the other node. Every wait has a deadline; every process is
stopped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config
from processes_support import local_cluster, running_on, vmplane
from rollout_support import Cluster

from vmplane.cli.dev_cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)

NODES = ("node01", "node02")
VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: {eviction}
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 1Gi}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/containerdisks/fedora:latest}}}}
      terminationGracePeriodSeconds: 0
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("cluster"), NODES) as cluster:
        yield cluster


@pytest.fixture
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    made = Cluster(api)
    yield made
    api.close()


def wait_nodes_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = {
            n.metadata.name
            for n in cluster.core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in (n.status and n.status.conditions) or [])
        }
        if ready >= set(NODES):
            return
        time.sleep(0.5)
    raise AssertionError("the agents did not register Ready nodes within 60 s")


def live_migratable(o: dict[str, Any] | None) -> bool:
    conditions = ((o or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "LiveMigratable" and c["status"] == "True" for c in conditions)


def test_drain_migrates_one_vm_restarts_the_other_elsewhere_and_uncordon_undoes_it(
    local: LocalCluster, cluster: Cluster
) -> None:
    wait_nodes_ready(cluster)
    cluster.core.patch_node("node01", {"spec": {"unschedulable": True}})
    cluster.create_vm(VM.format(name="mover", eviction="LiveMigrate"))
    cluster.create_vm(VM.format(name="keeper", eviction="None"))
    moving = cluster.wait(
        "virtualmachineinstances",
        "mover",
        lambda o: running_on("node02")(o) and live_migratable(o),
        timeout=60,
    )
    first = cluster.wait("virtualmachineinstances", "keeper", running_on("node02"), timeout=60)
    assert moving is not None
    assert first is not None
    cluster.core.patch_node("node01", {"spec": {"unschedulable": False}})

    drained = vmplane(local, "drain", "node02", "--timeout", "60")

    assert drained.returncode == 0, drained.stdout + drained.stderr
    lines = drained.stdout.splitlines()
    assert lines[0] == "node/node02 cordoned (taint kubevirt.io/drain:NoSchedule)"
    assert "vmi/default/keeper: stopping (evictionStrategy None): its VM starts it again" in drained.stdout
    assert "vmi/default/mover: migrating" in drained.stdout
    assert lines[-1] == "node/node02 drained"
    moved = cluster.wait("virtualmachineinstances", "mover", running_on("node01"), timeout=60)
    assert moved is not None
    assert moved["metadata"]["uid"] == moving["metadata"]["uid"]
    again = cluster.wait("virtualmachineinstances", "keeper", running_on("node01"), timeout=60)
    assert again is not None
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    node = cluster.core.read_node("node02")
    assert node.spec.unschedulable is True
    assert [(t.key, t.effect) for t in node.spec.taints or []] == [("kubevirt.io/drain", "NoSchedule")]

    undone = vmplane(local, "uncordon", "node02")

    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert undone.stdout.strip() == "node/node02 uncordoned"
    node = cluster.core.read_node("node02")
    assert not node.spec.unschedulable
    assert not node.spec.taints


def test_drain_of_an_unknown_node_fails(local: LocalCluster) -> None:
    result = vmplane(local, "drain", "node09", "--timeout", "5")
    assert result.returncode == 1
    assert "node09" in result.stderr
