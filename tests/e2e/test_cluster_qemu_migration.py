"""Live migration of a real guest between two node agents that are their own processes: ``vmplane
apiserver``, ``vmplane controller`` and ``vmplane agent --hypervisor qemu`` on node02 and node03, the
test guest under TCG, QEMU's migration over TCP on loopback with the containerDisk copied over NBD.

Tests run in file order on one guest. The first moves it with ``vmplane migrate --wait`` after a
vCPU was hot-plugged: from the target's serial console, its uptime goes on counting (no new boot)
and both vCPUs are there; ``kubectl get vmim`` shows upstream's phases. The next two throttle the
cluster's migrations and fail one on purpose: a target QEMU killed mid-stream, then a
``vmplane migrate-cancel``; each time the guest keeps running on its source. Then ``vmplane drain``
empties the guest's node of it (``LiveMigrate``: moved, same boot) and of a second guest
(``evictionStrategy: None``: stopped, and started again elsewhere by its VM); last, a nodeSelector
that excludes the guest's node is reported, and migrates the guest once the VM opts in.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config
from plane_support import (
    GUEST_IMAGE,
    SCRATCH_IMAGE,
    Cluster,
    Status,
    guest_cmdline,
    install_images,
    kill_recorded_guests,
    parse_status,
    reachable_dir,
)
from processes_support import local_cluster, running_on, vmplane

from vmplane.api.migration import PROGRESS_ANNOTATION
from vmplane.cli.dev_cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.timeout(600)]
NODES = ("node02", "node03")
NAME = "mover"
BOOT = 240.0
MIGRATION = 240.0
PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]


def vm(name: str = NAME, eviction: str = "LiveMigrate") -> dict[str, Any]:
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
      evictionStrategy: {eviction}
      domain:
        cpu: {{sockets: 1, maxSockets: 4}}
        memory: {{guest: 256Mi}}
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
    guests = reachable_dir("vmplane-migration-guests-")
    for node in NODES:
        install_images(guests / node)
    root = tmp_path_factory.mktemp("qemu-migration")
    try:
        with local_cluster(root, NODES, hypervisor="qemu", guest_root=guests) as cluster:
            yield cluster
    finally:
        kill_recorded_guests(guests)
        shutil.rmtree(guests, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    api.set_default_header("Connection", "close")
    cluster = Cluster(api)
    cluster.set_strategy("LiveUpdate")
    cluster.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm())
    try:
        yield cluster
    finally:
        api.close()


def run(local: LocalCluster, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert local.admin_kubeconfig is not None
    env = {**os.environ, "KUBECONFIG": str(local.admin_kubeconfig)}
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def console_log(local: LocalCluster, node: str, name: str = NAME) -> Path | None:
    assert local.guest_root is not None
    found = list((local.guest_root / node / "machines").glob(f"*{name}/qemu/console.log"))
    return found[0] if found else None


def statuses(local: LocalCluster, node: str, name: str = NAME) -> list[Status]:
    log = console_log(local, node, name)
    text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    return [parse_status(line) for line in text.splitlines() if line.startswith("VMPLANE-STATUS ")]


def wait_console(
    local: LocalCluster, node: str, predicate: Callable[[Status], bool], timeout: float
) -> Status:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in reversed(statuses(local, node)):
            if predicate(status):
                return status
        time.sleep(0.25)
    raise AssertionError(
        f"{node}: no matching console status in {timeout}s; last: {statuses(local, node)[-1:]}"
    )


def running_vmi(cluster: Cluster, name: str = NAME) -> dict[str, Any]:
    vmi = cluster.wait(
        "virtualmachineinstances",
        name,
        lambda o: ((o or {}).get("status") or {}).get("phase") == "Running",
        BOOT,
    )
    assert vmi is not None
    return vmi


def pending_reasons(cluster: Cluster, name: str = NAME) -> list[str]:
    vm_status = cluster.get("virtualmachines", name).get("status") or {}
    return [p.get("reason") for p in vm_status.get("pendingChanges") or []]


def other(node: str) -> str:
    return next(n for n in NODES if n != node)


def migrations(local: LocalCluster) -> list[dict[str, Any]]:
    listed = run(local, "kubectl", "get", "vmim", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return sorted(items, key=lambda m: m["metadata"]["creationTimestamp"])


def throttle(cluster: Cluster, bandwidth: str | None) -> None:
    body = {"spec": {"configuration": {"migrations": {"bandwidthPerMigration": bandwidth}}}}
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt", body
    )


def wait_moving(cluster: Cluster) -> dict[str, Any]:
    """The VMI once its source has sent guest memory (its published ``query-migrate`` figures): the
    disks' copy, which comes first, is over."""

    def moving(o: dict[str, Any] | None) -> bool:
        state = ((o or {}).get("status") or {}).get("migrationState") or {}
        raw = ((o or {}).get("metadata") or {}).get("annotations", {}).get(PROGRESS_ANNOTATION)
        figures = json.loads(raw) if raw else {}
        return (
            figures.get("migrationUid") == state.get("migrationUid")
            and figures.get("transferredBytes", 0) > 0
        )

    vmi = cluster.wait("virtualmachineinstances", NAME, moving, MIGRATION)
    assert vmi is not None
    return vmi


def wait_ended(cluster: Cluster) -> dict[str, Any]:
    def ended(o: dict[str, Any] | None) -> bool:
        state = ((o or {}).get("status") or {}).get("migrationState") or {}
        return bool(state.get("endTimestamp"))

    vmi = cluster.wait("virtualmachineinstances", NAME, ended, MIGRATION)
    assert vmi is not None
    return vmi


def test_migrate_moves_a_running_guest_without_a_reboot_keeping_a_hotplugged_vcpu(
    local: LocalCluster, cluster: Cluster
) -> None:
    booted = running_vmi(cluster)
    source = booted["status"]["nodeName"]
    wait_console(local, source, lambda s: True, BOOT)
    patch = {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}}
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", NAME, patch
    )
    before = wait_console(local, source, lambda s: s["vcpus"] == "2", BOOT)

    moved = vmplane(local, "migrate", NAME, "--wait", "--timeout", str(MIGRATION), timeout=MIGRATION + 30)
    assert moved.returncode == 0, moved.stderr + moved.stdout
    target = other(source)
    assert f"VM {NAME} migrated to {target}" in moved.stdout
    assert "Succeeded" in moved.stdout
    assert "100%" in moved.stdout

    vmi = cluster.get("virtualmachineinstances", NAME)
    assert (vmi["metadata"]["uid"], vmi["status"]["nodeName"]) == (booted["metadata"]["uid"], target)
    assert vmi["status"]["migrationState"]["completed"] is True
    after = wait_console(local, target, lambda s: float(s["uptime"]) > float(before["uptime"]), 60)
    assert after["vcpus"] == "2"
    target_log = console_log(local, target)
    assert target_log is not None
    assert "VMPLANE-BOOTED" not in target_log.read_text(errors="replace")
    [migration] = migrations(local)
    assert migration["status"]["phase"] == "Succeeded"
    assert [t["phase"] for t in migration["status"]["phaseTransitionTimestamps"]] == PHASES
    deadline = time.monotonic() + 60
    while console_log(local, source) is not None:  # the source forgot its machine and its files
        assert time.monotonic() < deadline, "the source node kept the migrated machine"
        time.sleep(0.25)


def test_a_migration_whose_target_qemu_is_killed_fails_and_the_guest_runs_on(
    local: LocalCluster, cluster: Cluster
) -> None:
    source = running_vmi(cluster)["status"]["nodeName"]
    target = other(source)
    throttle(cluster, "2Mi")
    try:
        assert vmplane(local, "migrate", NAME).returncode == 0
        wait_moving(cluster)
        assert local.guest_root is not None
        [pidfile] = (local.guest_root / target / "machines").glob("*/qemu/qemu.pid")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        vmi = wait_ended(cluster)
    finally:
        throttle(cluster, None)
    state = vmi["status"]["migrationState"]
    assert state["failed"] is True
    assert state["failureReason"]
    assert (vmi["status"]["nodeName"], vmi["status"]["phase"]) == (source, "Running")
    last = float(statuses(local, source)[-1]["uptime"])
    wait_console(local, source, lambda s: float(s["uptime"]) > last + 2, 60)
    failed = cluster.wait(
        "virtualmachineinstancemigrations",
        migrations(local)[-1]["metadata"]["name"],
        lambda o: ((o or {}).get("status") or {}).get("phase") == "Failed",
        60,
    )
    assert failed is not None


def test_migrate_cancel_mid_migration_leaves_the_guest_on_its_source(
    local: LocalCluster, cluster: Cluster
) -> None:
    source = running_vmi(cluster)["status"]["nodeName"]
    throttle(cluster, "2Mi")
    try:
        assert vmplane(local, "migrate", NAME).returncode == 0
        wait_moving(cluster)
        cancelled = vmplane(local, "migrate-cancel", NAME)
        assert cancelled.returncode == 0, cancelled.stderr
        vmi = wait_ended(cluster)
    finally:
        throttle(cluster, None)
    state = vmi["status"]["migrationState"]
    assert (state["abortRequested"], state["abortStatus"], state["failed"]) == (True, "Succeeded", True)
    assert (vmi["status"]["nodeName"], vmi["status"]["phase"]) == (source, "Running")
    last = float(statuses(local, source)[-1]["uptime"])
    wait_console(local, source, lambda s: float(s["uptime"]) > last + 2, 60)


def test_drain_moves_a_live_migrate_guest_and_restarts_a_none_one_elsewhere(
    local: LocalCluster, cluster: Cluster
) -> None:
    mover = running_vmi(cluster)
    node = mover["status"]["nodeName"]
    away = other(node)
    assert run(local, "kubectl", "cordon", away).returncode == 0  # the second guest lands beside the first
    try:
        manifest = vm("keeper", "None")
        cluster.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", manifest
        )
        keeper = running_vmi(cluster, "keeper")
    finally:
        assert run(local, "kubectl", "uncordon", away).returncode == 0
    assert keeper["status"]["nodeName"] == node
    before = wait_console(local, node, lambda s: True, BOOT)

    drained = vmplane(local, "drain", node, "--timeout", str(MIGRATION), timeout=MIGRATION + 30)

    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert drained.stdout.splitlines()[-1] == f"node/{node} drained"
    moved = cluster.wait("virtualmachineinstances", NAME, running_on(away), 60)
    assert moved is not None
    assert moved["metadata"]["uid"] == mover["metadata"]["uid"]
    after = wait_console(local, away, lambda s: float(s["uptime"]) > float(before["uptime"]), 60)
    assert after["vcpus"] == "2"
    again = cluster.wait(
        "virtualmachineinstances", "keeper", running_on(away, not_uid=keeper["metadata"]["uid"]), BOOT
    )
    assert again is not None
    nodes = json.loads(run(local, "kubectl", "get", "node", node, "-o", "json").stdout)
    assert nodes["spec"].get("unschedulable") is True
    assert vmplane(local, "uncordon", node).returncode == 0
    cluster.custom.delete_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", "keeper"
    )


def test_a_placement_that_excludes_the_node_is_reported_then_migrated_once_opted_in(
    local: LocalCluster, cluster: Cluster
) -> None:
    placed = running_vmi(cluster)
    node = placed["status"]["nodeName"]
    away = other(node)
    started = len(migrations(local))
    selector = {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": away}}}}}
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", NAME, selector
    )
    deadline = time.monotonic() + 60
    while "PlacementViolatedByCurrentNode" not in pending_reasons(cluster):
        assert time.monotonic() < deadline, f"no placement report: {pending_reasons(cluster)}"
        time.sleep(0.25)
    assert cluster.get("virtualmachineinstances", NAME)["status"]["nodeName"] == node
    assert len(migrations(local)) == started  # reported, not acted on: no migration without the opt-in
    before = statuses(local, node)[-1]

    opt_in = {"metadata": {"annotations": {"vmplane.io/migrate-on-placement-change": "true"}}}
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", NAME, opt_in
    )

    moved = cluster.wait("virtualmachineinstances", NAME, running_on(away), MIGRATION)
    assert moved is not None
    assert moved["metadata"]["uid"] == placed["metadata"]["uid"]
    wait_console(local, away, lambda s: float(s["uptime"]) > float(before["uptime"]), 60)
    deadline = time.monotonic() + 60
    while "PlacementViolatedByCurrentNode" in pending_reasons(cluster):
        assert time.monotonic() < deadline, "the placement report stayed after the migration"
        time.sleep(0.25)
