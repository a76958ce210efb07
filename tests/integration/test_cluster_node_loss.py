"""Node loss in the multi-process cluster: ``kill -9`` of the agent whose node runs a VM with
``runStrategy: Always``. The node becomes ``Ready=Unknown`` with the unreachable taints within the
grace period; its VMI fails (``NodeUnreachable``) only past the fencing deadline; the VM then runs
again on another node, and at no sampled moment do two VMIs of the VM run.

The agents use the simulated hypervisor, whose guests live inside the agent process: a guest dies
with its agent, which is the fenced state for that driver (real QEMU outlives its agent, and is
stopped by the agent's fence watchdog: ``tests/e2e/test_cluster_qemu_fencing.py``). Short timings
(grace 6 s, fence 4 s) keep the test bounded; the controller runs alone, so no handover interferes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config, watch
from rollout_support import Cluster, printable

from vmplane.cli.dev_cluster import NODES, LocalCluster
from vmplane.controller.node_health import NODE_UNREACHABLE, UNREACHABLE_TAINT_KEY, HealthConfig

pytestmark = pytest.mark.timeout(180)

HEALTH = HealthConfig(grace_period=6.0, fence_timeout=4.0)
# The agents renew every fence_timeout / 3 s: the last renewal the controller saw before the kill
# is at most that old (plus a write's latency).
RENEWAL = HEALTH.fence_timeout / 3 + 0.5
# Slack for a loaded machine (2 shared cores): detection may come this late, never early.
LATE = 10.0
SAMPLE = 0.2
VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: survivor
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu: {sockets: 1}
        memory: {guest: 1Gi}
        devices:
          disks:
          - {name: root, disk: {bus: virtio}}
      volumes:
      - {name: root, containerDisk: {image: quay.io/containerdisks/fedora:latest}}
      terminationGracePeriodSeconds: 0
"""


@dataclass(frozen=True, slots=True)
class Seen:
    """One watch event of the VM's VMIs, ``at`` seconds (monotonic)."""

    at: float
    uid: str
    phase: str  # "" once deleted
    reason: str
    node: str


def record_vmis(kubeconfig: str, until: float, history: list[Seen], done: threading.Event) -> None:
    """Append every change of the VM's VMIs to ``history`` until a new VMI runs or ``until``
    (monotonic); its own API client, as the kubernetes client is not shared across threads."""
    api = config.new_client_from_config(config_file=kubeconfig)
    custom = client.CustomObjectsApi(api)
    try:
        listed = custom.list_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachineinstances", field_selector="metadata.name=survivor"
        )
        first = {o["metadata"]["uid"] for o in listed["items"]}
        for o in listed["items"]:
            history.append(seen(o, deleted=False))
        done.set()  # the history starts here
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            *("kubevirt.io", "v1", "default", "virtualmachineinstances"),
            field_selector="metadata.name=survivor",
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=int(until - time.monotonic()),
        )
        try:
            for event in stream:
                history.append(seen(event["object"], deleted=event["type"] == "DELETED"))
                if history[-1].uid not in first and history[-1].phase == "Running":
                    return
        finally:
            stream.close()
    finally:
        api.close()


def seen(vmi: dict[str, Any], *, deleted: bool) -> Seen:
    status = vmi.get("status") or {}
    return Seen(
        at=time.monotonic(),
        uid=vmi["metadata"]["uid"],
        phase="" if deleted else status.get("phase", ""),
        reason=status.get("reason", ""),
        node=status.get("nodeName", ""),
    )


def most_running_at_once(history: list[Seen]) -> int:
    """Replay the history: the largest number of the VM's VMIs in phase Running at one moment."""
    phases: dict[str, str] = {}
    most = 0
    for change in history:
        phases[change.uid] = change.phase
        most = max(most, sum(phase == "Running" for phase in phases.values()))
    return most


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        root=tmp_path_factory.mktemp("node-loss"),
        grace_period=HEALTH.grace_period,
        fence_timeout=HEALTH.fence_timeout,
    )
    try:
        cluster.start(controllers=1)
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    api.set_default_header("Connection", "close")
    made = Cluster(api)
    yield made
    api.close()


def unreachable(cluster: Cluster, node: str) -> tuple[str | None, frozenset[str]]:
    """The node's Ready status and the effects of its unreachable taints."""
    found = cluster.core.read_node(node)
    ready = next((c.status for c in found.status.conditions or [] if c.type == "Ready"), None)
    return ready, frozenset(t.effect for t in found.spec.taints or [] if t.key == UNREACHABLE_TAINT_KEY)


def test_killing_an_agent_fences_its_vm_and_runs_it_on_another_node_never_twice(
    local: LocalCluster, cluster: Cluster
) -> None:
    cluster.create_vm(VM)
    cluster.wait("virtualmachines", "survivor", lambda o: printable(o) == "Running", timeout=60)
    vmi = cluster.get("virtualmachineinstances", "survivor")
    assert vmi is not None
    lost, old_uid = vmi["status"]["nodeName"], vmi["metadata"]["uid"]
    assert lost in NODES
    history: list[Seen] = []
    recording = threading.Event()
    bound = time.monotonic() + HEALTH.fencing_deadline + 4 * LATE
    recorder = threading.Thread(
        target=record_vmis, args=(str(local.admin_kubeconfig), bound, history, recording), daemon=True
    )
    recorder.start()
    assert recording.wait(30), "the VMI watch did not start"

    local.kill(lost)
    killed = time.monotonic()
    node_ready, effects = unreachable(cluster, lost)
    while node_ready != "Unknown" and time.monotonic() - killed < HEALTH.grace_period + LATE:
        time.sleep(SAMPLE)
        node_ready, effects = unreachable(cluster, lost)
    detected = time.monotonic() - killed
    recorder.join(timeout=bound - time.monotonic() + 5)

    assert node_ready == "Unknown", f"node {lost} was not judged within {HEALTH.grace_period + LATE} s"
    assert detected >= HEALTH.grace_period - RENEWAL, "the node was judged before its grace period"
    assert effects == {"NoSchedule", "NoExecute"}
    failed = next(c for c in history if c.uid == old_uid and c.phase == "Failed")
    assert failed.reason == NODE_UNREACHABLE
    assert failed.at - killed >= HEALTH.fencing_deadline - RENEWAL, "the VMI was given up before the deadline"
    assert failed.at - killed >= detected - SAMPLE
    new = [c for c in history if c.uid != old_uid]
    assert new, f"no new VMI of the VM; history: {history}"
    assert new[0].at >= failed.at, "a new VMI existed before the old one failed"
    assert new[-1].phase == "Running"
    assert new[-1].node not in ("", lost)
    assert most_running_at_once(history) == 1
