"""Placement changes that take effect across processes: a LocalCluster (API server, one controller,
agents node01 and node02 on simulated hypervisors) driven through the kubernetes client and the
``vmplane`` command. A VM under LiveUpdate whose nodeSelector moves to node02 reports the violation;
``vmplane migrate VM --wait`` moves the same guest to node02 and the report goes; with the opt-in
annotation on the KubeVirt object a second VM moves by itself. Every wait is a watch with a
deadline; every process is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config
from processes_support import local_cluster, running_on, vmplane
from rollout_support import GROUP, VERSION, Cluster, condition

from vmplane.cli.dev_cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)

NODES = ("node01", "node02")
VMIS = "virtualmachineinstances"
VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      nodeSelector: {{kubernetes.io/hostname: node01}}
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
TO_NODE02 = {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "node02"}}}}}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("cluster"), NODES) as cluster:
        yield cluster


@pytest.fixture
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    made = Cluster(api)
    made.set_strategy("LiveUpdate")
    yield made
    api.close()


def migratable_on_node01(o: dict[str, Any] | None) -> bool:
    live = condition(o, "LiveMigratable")
    return running_on("node01")(o) and live is not None and live["status"] == "True"


def violated(vm: dict[str, Any] | None) -> bool:
    placement = condition(vm, "PlacementViolated")
    return placement is not None and placement["status"] == "True"


def reported_clean(vm: dict[str, Any] | None) -> bool:
    return not violated(vm) and not ((vm or {}).get("status") or {}).get("pendingChanges")


def test_vmplane_migrate_moves_a_guest_its_placement_excludes_and_the_report_goes(
    local: LocalCluster, cluster: Cluster
) -> None:
    cluster.create_vm(VM.format(name="placed"))
    first = cluster.wait(VMIS, "placed", migratable_on_node01, timeout=60)
    assert first is not None
    cluster.patch_vm("placed", TO_NODE02)

    vm = cluster.wait("virtualmachines", "placed", violated, timeout=30)
    assert [p["reason"] for p in vm["status"]["pendingChanges"]] == ["PlacementViolatedByCurrentNode"]  # type: ignore[index]
    assert condition(vm, "RestartRequired") is None

    result = vmplane(local, "migrate", "placed", "--wait", "--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    moved = cluster.wait(VMIS, "placed", running_on("node02"), timeout=30)
    assert moved is not None
    assert moved["metadata"]["uid"] == first["metadata"]["uid"]
    assert cluster.wait("virtualmachines", "placed", reported_clean, timeout=30) is not None


def test_opted_in_on_the_kubevirt_object_a_guest_moves_by_itself(cluster: Cluster) -> None:
    opt_in = {"metadata": {"annotations": {"vmplane.io/migrate-on-placement-change": "true"}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt", opt_in)
    cluster.create_vm(VM.format(name="follows"))
    first = cluster.wait(VMIS, "follows", migratable_on_node01, timeout=60)
    assert first is not None

    cluster.patch_vm("follows", TO_NODE02)

    moved = cluster.wait(VMIS, "follows", running_on("node02"), timeout=60)
    assert moved is not None
    assert moved["metadata"]["uid"] == first["metadata"]["uid"]
    assert cluster.wait("virtualmachines", "follows", reported_clean, timeout=30) is not None
