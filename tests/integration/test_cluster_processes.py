"""The control plane as separate processes on loopback: ``vmplane apiserver``, two leader-elected
``vmplane controller`` and three ``vmplane agent`` (node01..node03, simulated hypervisor), started by
``vmplane.cli.dev_cluster.LocalCluster``. Driven through the kubernetes client; every wait is a watch
with a deadline; every process is stopped at the end.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from rollout_support import Cluster, printable

from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.app import APISERVER_USER
from vmplane.cli.dev_cluster import NODES, LocalCluster
from vmplane.client.base import ForbiddenError
from vmplane.client.config import https_client, read_kubeconfig

pytestmark = pytest.mark.timeout(240)

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1, maxSockets: 4}}
        memory: {{guest: 1Gi}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/containerdisks/fedora:latest}}}}
      terminationGracePeriodSeconds: 0
"""
HANDOVER = 20.0
LIST_LINE = re.compile(r"GET (/\S+?)(\?\S*)? -> 200 in \S+ ms by (\S+)")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop_all()


def api_of(local: LocalCluster) -> Cluster:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    api.set_default_header("Connection", "close")  # the API server restarts within this module
    return Cluster(api)


@pytest.fixture
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    made = api_of(local)
    yield made
    made.api.close()


def wait_nodes_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = cluster.core.list_node().items
        ready = {
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in (n.status and n.status.conditions) or [])
        }
        if ready >= set(NODES):
            return
        time.sleep(0.5)
    raise AssertionError("the three agents did not register Ready nodes within 60 s")


def running_vm(cluster: Cluster, name: str, node: str) -> dict[str, Any]:
    cluster.create_vm(VM.format(name=name, node=node))
    cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running", timeout=60)
    vmi = cluster.get("virtualmachineinstances", name)
    assert vmi is not None
    return vmi


def lease_holder(cluster: Cluster) -> str:
    lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease("vmplane-controller", "kube-system")
    return str(lease.spec.holder_identity)


def test_vms_spread_over_the_three_agents_by_node_selector(cluster: Cluster) -> None:
    wait_nodes_ready(cluster)
    for node in NODES:
        vmi = running_vm(cluster, f"spread-{node}", node)
        assert vmi["status"]["nodeName"] == node
        assert vmi["status"]["phase"] == "Running"


def test_live_cpu_hotplug_reaches_a_vm_whose_agent_is_another_process(cluster: Cluster) -> None:
    cluster.set_strategy("LiveUpdate")
    running_vm(cluster, "hotplug", "node02")
    cluster.patch_vm("hotplug", {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}})
    vmi = cluster.wait(
        "virtualmachineinstances",
        "hotplug",
        lambda o: ((o or {}).get("status") or {}).get("currentCPUTopology", {}).get("sockets") == 2,
        timeout=60,
    )
    assert vmi is not None
    assert vmi["status"]["nodeName"] == "node02"


def test_an_agent_token_cannot_change_another_nodes_vmi(local: LocalCluster, cluster: Cluster) -> None:
    running_vm(cluster, "guarded", "node03")
    kubeconfig = local.root / "node01.kubeconfig"

    async def attempt() -> None:
        intruder = https_client(read_kubeconfig(kubeconfig))
        try:
            with pytest.raises(ForbiddenError):
                await intruder.patch(
                    VIRTUAL_MACHINE_INSTANCES,
                    "default",
                    "guarded",
                    {"metadata": {"labels": {"owned": "by-node01"}}},
                )
            with pytest.raises(ForbiddenError):
                await intruder.patch(
                    VIRTUAL_MACHINE_INSTANCES,
                    "default",
                    "guarded",
                    {"status": {"phase": "Failed"}},
                    subresource="status",
                )
        finally:
            await intruder.close()

    asyncio.run(attempt())
    vmi = cluster.get("virtualmachineinstances", "guarded")
    assert vmi is not None
    assert "owned" not in (vmi["metadata"].get("labels") or {})
    assert vmi["status"]["phase"] == "Running"


def _vmis(cluster: Cluster) -> dict[str, str]:
    listed = cluster.custom.list_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachineinstances"
    )
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in listed["items"]}


def test_killing_the_leading_controller_hands_over_within_20s_and_keeps_every_vmi(
    local: LocalCluster, cluster: Cluster
) -> None:
    running_vm(cluster, "before-handover", "node01")
    before = _vmis(cluster)
    leader = lease_holder(cluster)
    local.kill(leader)
    killed = time.monotonic()
    while lease_holder(cluster) == leader:
        assert time.monotonic() - killed < HANDOVER, f"no other controller took over from {leader}"
        time.sleep(0.2)
    # The new leader acts: a new VM starts; the VMIs that ran before are the same objects, once each.
    running_vm(cluster, "after-handover", "node02")
    after = _vmis(cluster)
    assert {name: after[name] for name in before} == before
    assert sorted(after) == sorted([*before, "after-handover"])
    local.start_controller(leader)  # two controllers again for the tests that follow


def _informer_lists(log: str) -> list[tuple[str, str]]:
    """(user, path) of the lists (GETs of collections, not watches) the components' informers made,
    by the API server's debug log: every informer lists across namespaces; the API server's own
    admission informers are left out."""
    found = []
    for match in LIST_LINE.finditer(log):
        path, query, user = match.group(1), match.group(2) or "", match.group(3)
        if "watch=" in query or user == APISERVER_USER.name:
            continue
        parts = path.strip("/").split("/")
        if len(parts[2:] if parts[0] == "api" else parts[3:]) == 1:
            found.append((user, path + query))
    return found


def test_after_an_api_server_restart_informers_resume_without_listing_again(
    local: LocalCluster, cluster: Cluster
) -> None:
    wait_nodes_ready(cluster)
    log_path = local.root / "logs" / "apiserver.log"
    assert _informer_lists(log_path.read_text(errors="replace")), "the components' first lists are logged"
    leader, restarts = lease_holder(cluster), dict(local.restarts)
    local.stop("apiserver")
    offset = log_path.stat().st_size
    local.start_apiserver()
    restarted = api_of(local)
    try:
        running_vm(restarted, "after-restart", "node03")  # the controllers and node03's agent act again
        new_leader = lease_holder(restarted)
    finally:
        restarted.api.close()
    lists = _informer_lists(log_path.read_text(errors="replace")[offset:])
    # The agents watch on from their last resourceVersions: not one list.
    assert [path for user, path in lists if user.startswith("system:node:")] == []
    controller_lists = [path for user, path in lists if user == "system:vmplane:controllers"]
    if new_leader == leader and local.restarts == restarts:
        assert controller_lists == []
    else:
        # The restart outlasted the renew deadline: the leader stood down (client-go's rule), its
        # process exited and was started again, and the new leader filled its caches once, one list
        # per informer, no storm.
        assert len(controller_lists) == len(set(controller_lists))


def test_every_agent_and_the_api_server_are_still_running(local: LocalCluster) -> None:
    for name in ("apiserver", *NODES):
        assert local.processes[name].poll() is None, name
