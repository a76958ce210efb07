"""docs/rollout.md §2 end to end through the HTTP API: each lifecycle step of a rollout, under each strategy.

A real control plane (API, VM controller, scheduler, node agent) runs in-process on a real SQLite
store, over a simulated hypervisor so failures can be injected; the guest-side proof with real QEMU
is in tests/e2e. Every wait is a watch with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from rollout_support import Cluster, InProcessServer, condition, printable

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: {run_strategy}
  template:
    spec:
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 1Gi}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
          interfaces:
          - {{name: default, masquerade: {{}}}}
      networks:
      - {{name: default, pod: {{}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/containerdisks/fedora:latest}}}}
      terminationGracePeriodSeconds: 0
"""

STRATEGIES = ["Stage", "LiveUpdate"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    running = InProcessServer(data_dir=tmp_path_factory.mktemp("plane"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cluster(server: InProcessServer) -> Iterator[Cluster]:
    cluster = Cluster(server.api())
    yield cluster
    cluster.set_strategy(None)
    cluster.api.close()


def spec_patch(**fields: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": fields}}}


def running_vm(
    cluster: Cluster, name: str, *, strategy: str | None, run_strategy: str = "Always"
) -> dict[str, Any]:
    cluster.set_strategy(strategy)
    cluster.create_vm(VM.format(name=name, run_strategy=run_strategy))
    vm = cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running")
    assert vm is not None
    return vm


def restart_required(vm: dict[str, Any] | None) -> bool:
    required = condition(vm, "RestartRequired")
    return required is not None and required["status"] == "True"


def pending_paths(vm: dict[str, Any] | None) -> list[str]:
    return [p["path"] for p in ((vm or {}).get("status") or {}).get("pendingChanges") or []]


def vmi_spec(cluster: Cluster, name: str) -> dict[str, Any]:
    vmi = cluster.get("virtualmachineinstances", name)
    assert vmi is not None
    spec: dict[str, Any] = vmi["spec"]
    return spec


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_created_vm_reaches_running(cluster: Cluster, strategy: str) -> None:
    vm = running_vm(cluster, f"create-{strategy.lower()}", strategy=strategy)
    assert condition(vm, "Ready")["status"] == "True"  # type: ignore[index]
    assert not restart_required(vm)
    vmi = cluster.get("virtualmachineinstances", f"create-{strategy.lower()}")
    assert vmi is not None
    assert vmi["status"]["phase"] == "Running"
    node = client.CoreV1Api(cluster.api).read_node(vmi["status"]["nodeName"])
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"


LIVE_CHANGES = {
    "cpu": (spec_patch(domain={"cpu": {"sockets": 2}}), "spec.template.spec.domain.cpu.sockets"),
    "memory": (spec_patch(domain={"memory": {"guest": "1536Mi"}}), "spec.template.spec.domain.memory.guest"),
    "placement": (
        spec_patch(nodeSelector={"kubernetes.io/hostname": "node01"}),
        "spec.template.spec.nodeSelector",
    ),
    "disk": (
        spec_patch(
            domain={
                "devices": {
                    "disks": [
                        {"name": "root", "disk": {"bus": "virtio"}},
                        {"name": "data", "disk": {"bus": "virtio"}},
                    ]
                }
            },
            volumes=[
                {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data", "hotpluggable": True}},
            ],
        ),
        "spec.template.spec.volumes[name=data]",
    ),
    "nic": (
        spec_patch(
            domain={
                "devices": {
                    "interfaces": [{"name": "default", "masquerade": {}}, {"name": "secondary", "bridge": {}}]
                }
            },
            networks=[{"name": "default", "pod": {}}, {"name": "secondary", "multus": {"networkName": "br"}}],
        ),
        "spec.template.spec.domain.devices.interfaces[name=secondary]",
    ),
}


def observed_after(kind: str, vmi: dict[str, Any] | None) -> bool:
    status = (vmi or {}).get("status") or {}
    if kind == "cpu":
        return (status.get("currentCPUTopology") or {}).get("sockets") == 2
    if kind == "memory":
        return (status.get("memory") or {}).get("guestCurrent") == "1536Mi"
    if kind == "placement":
        return ((vmi or {}).get("spec") or {}).get("nodeSelector") == {"kubernetes.io/hostname": "node01"}
    if kind == "disk":
        return any(
            v.get("name") == "data" and v.get("phase") == "Ready" for v in status.get("volumeStatus") or []
        )
    return any(i.get("name") == "secondary" for i in status.get("interfaces") or [])


@pytest.mark.parametrize("kind", list(LIVE_CHANGES))
def test_live_capable_change_reaches_the_guest_under_live_update(cluster: Cluster, kind: str) -> None:
    name = f"live-{kind}"
    running_vm(cluster, name, strategy="LiveUpdate")
    patch, _ = LIVE_CHANGES[kind]
    cluster.patch_vm(name, patch)
    cluster.wait("virtualmachineinstances", name, lambda o: observed_after(kind, o))
    vm = cluster.get("virtualmachines", name)
    assert not restart_required(vm)
    assert pending_paths(vm) == []


@pytest.mark.parametrize("kind", list(LIVE_CHANGES))
def test_the_same_change_is_staged_under_stage(cluster: Cluster, kind: str) -> None:
    name = f"staged-{kind}"
    running_vm(cluster, name, strategy="Stage")
    before = vmi_spec(cluster, name)
    patch, path = LIVE_CHANGES[kind]
    cluster.patch_vm(name, patch)
    vm = cluster.wait("virtualmachines", name, restart_required)
    assert condition(vm, "RestartRequired")["reason"] == "StagedByStrategy"  # type: ignore[index]
    assert path in pending_paths(vm)
    assert vmi_spec(cluster, name) == before


def test_non_live_change_lists_every_pending_change(cluster: Cluster) -> None:
    running_vm(cluster, "nonlive", strategy="LiveUpdate")
    cluster.patch_vm("nonlive", spec_patch(hostname="renamed", domain={"cpu": {"cores": 2}}))
    vm = cluster.wait("virtualmachines", "nonlive", lambda o: len(pending_paths(o)) == 2)
    assert sorted(pending_paths(vm)) == ["spec.template.spec.domain.cpu.cores", "spec.template.spec.hostname"]
    message = condition(vm, "RestartRequired")["message"]  # type: ignore[index]
    assert "spec.template.spec.hostname" in message
    assert "spec.template.spec.domain.cpu.cores" in message
    assert any(e.startswith("RestartRequired:") for e in cluster.events_about("nonlive"))


def test_live_capable_change_waits_while_restart_is_required(cluster: Cluster) -> None:
    running_vm(cluster, "sticky", strategy="LiveUpdate")
    cluster.patch_vm("sticky", spec_patch(hostname="renamed"))
    cluster.wait("virtualmachines", "sticky", restart_required)
    cluster.patch_vm("sticky", spec_patch(domain={"cpu": {"sockets": 2}}))
    vm = cluster.wait("virtualmachines", "sticky", lambda o: len(pending_paths(o)) == 2)
    waiting = [p for p in vm["status"]["pendingChanges"] if p["path"].endswith("cpu.sockets")]  # type: ignore[index]
    assert waiting[0]["reason"] == "WaitingForRestart"
    assert vmi_spec(cluster, "sticky")["domain"]["cpu"]["sockets"] == 1


def test_reverting_the_template_clears_the_condition_and_the_waiting_change_goes_live(
    cluster: Cluster,
) -> None:
    running_vm(cluster, "revert-edit", strategy="LiveUpdate")
    cluster.patch_vm("revert-edit", spec_patch(hostname="renamed", domain={"cpu": {"sockets": 2}}))
    cluster.wait("virtualmachines", "revert-edit", restart_required)
    cluster.patch_vm("revert-edit", spec_patch(hostname=None))
    vm = cluster.wait("virtualmachines", "revert-edit", lambda o: not restart_required(o))
    assert pending_paths(vm) == []
    cluster.wait("virtualmachineinstances", "revert-edit", lambda o: observed_after("cpu", o))


def test_revert_subresource_clears_the_condition(cluster: Cluster) -> None:
    running_vm(cluster, "revert-sub", strategy="LiveUpdate")
    cluster.patch_vm("revert-sub", spec_patch(hostname="renamed", domain={"cpu": {"sockets": 2}}))
    cluster.wait("virtualmachines", "revert-sub", restart_required)
    cluster.subresource("revert-sub", "revert", {"paths": ["spec.template.spec.hostname"]})
    vm = cluster.wait("virtualmachines", "revert-sub", lambda o: not restart_required(o))
    assert "hostname" not in vm["spec"]["template"]["spec"]  # type: ignore[index]
    cluster.wait("virtualmachineinstances", "revert-sub", lambda o: observed_after("cpu", o))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_restart_applies_every_pending_change_and_clears_the_condition(
    cluster: Cluster, strategy: str
) -> None:
    name = f"restart-{strategy.lower()}"
    running_vm(cluster, name, strategy=strategy)
    first_uid = cluster.get("virtualmachineinstances", name)["metadata"]["uid"]  # type: ignore[index]
    cluster.patch_vm(name, spec_patch(hostname="renamed", domain={"cpu": {"sockets": 3, "cores": 2}}))
    cluster.wait("virtualmachines", name, restart_required)
    cluster.subresource(name, "restart")
    vmi = cluster.wait(
        "virtualmachineinstances",
        name,
        lambda o: o is not None
        and o["metadata"]["uid"] != first_uid
        and (o.get("status") or {}).get("phase") == "Running",
    )
    assert vmi["spec"]["hostname"] == "renamed"  # type: ignore[index]
    assert vmi["status"]["currentCPUTopology"] == {"sockets": 3, "cores": 2, "threads": 1}  # type: ignore[index]
    vm = cluster.wait(
        "virtualmachines", name, lambda o: not restart_required(o) and printable(o) == "Running"
    )
    assert pending_paths(vm) == []


def test_cluster_default_change_is_pending_with_source_cluster(cluster: Cluster) -> None:
    running_vm(cluster, "cluster-default", strategy="LiveUpdate")
    cluster.set_strategy("LiveUpdate", cpuModel="Haswell")
    try:
        vm = cluster.wait("virtualmachines", "cluster-default", restart_required)
        [change] = vm["status"]["pendingChanges"]  # type: ignore[index]
        assert (change["path"], change["source"], change["reason"]) == (
            "spec.template.spec.domain.cpu.model",
            "cluster",
            "ClusterDefaultChanged",
        )
        assert (change.get("running"), change["desired"]) == (None, "Haswell")
    finally:
        cluster.set_strategy("LiveUpdate", cpuModel=None)


def test_strategy_switch_from_stage_to_live_update_hotplugs_the_staged_change(cluster: Cluster) -> None:
    running_vm(cluster, "switch", strategy="Stage")
    cluster.patch_vm("switch", spec_patch(domain={"cpu": {"sockets": 2}}))
    cluster.wait("virtualmachines", "switch", restart_required)
    cluster.set_strategy("LiveUpdate")
    cluster.wait("virtualmachineinstances", "switch", lambda o: observed_after("cpu", o))
    cluster.wait("virtualmachines", "switch", lambda o: not restart_required(o))


def test_failed_hotplug_becomes_a_pending_change_with_restart_required(
    cluster: Cluster, server: InProcessServer
) -> None:
    running_vm(cluster, "hotplug-fails", strategy="LiveUpdate")
    assert server.hypervisor is not None
    server.call(server.hypervisor.refuse_hotplug, "cpu")
    try:
        cluster.patch_vm("hotplug-fails", spec_patch(domain={"cpu": {"sockets": 2}}))
        vm = cluster.wait("virtualmachines", "hotplug-fails", restart_required)
    finally:
        server.call(lambda: server.hypervisor and server.hypervisor.refuse_hotplug("cpu", refuse=False))
    [change] = vm["status"]["pendingChanges"]  # type: ignore[index]
    assert (change["path"], change["reason"], change["running"], change["desired"]) == (
        "spec.template.spec.domain.cpu.sockets",
        "HotplugFailed",
        1,
        2,
    )
    vmi = cluster.get("virtualmachineinstances", "hotplug-fails")
    assert vmi["status"]["currentCPUTopology"]["sockets"] == 1  # type: ignore[index]
    assert any(e.startswith("HotplugFailed:") for e in cluster.events_about("hotplug-fails"))


@pytest.mark.parametrize(
    ("run_strategy", "replaced"),
    [("Always", True), ("RerunOnFailure", True), ("Manual", False)],
)
def test_hypervisor_process_death_follows_the_run_strategy(
    cluster: Cluster, server: InProcessServer, run_strategy: str, replaced: bool
) -> None:
    name = f"death-{run_strategy.lower()}"
    cluster.set_strategy("LiveUpdate")
    cluster.create_vm(VM.format(name=name, run_strategy=run_strategy))
    if run_strategy == "Manual":
        cluster.subresource(name, "start")
    cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running")
    uid = cluster.get("virtualmachineinstances", name)["metadata"]["uid"]  # type: ignore[index]
    assert server.hypervisor is not None
    server.call(server.hypervisor.kill, f"default_{name}")
    if replaced:
        cluster.wait(
            "virtualmachineinstances",
            name,
            lambda o: (
                o is not None
                and o["metadata"]["uid"] != uid
                and (o.get("status") or {}).get("phase") == "Running"
            ),
        )
    else:
        vmi = cluster.wait(
            "virtualmachineinstances", name, lambda o: (o or {}).get("status", {}).get("phase") == "Failed"
        )
        assert vmi["metadata"]["uid"] == uid  # type: ignore[index]
        cluster.wait("virtualmachines", name, lambda o: printable(o) == "Stopped")


def test_control_plane_restart_mid_rollout_converges_without_duplicating_the_vmi(
    cluster: Cluster, server: InProcessServer
) -> None:
    running_vm(cluster, "restart-plane", strategy="LiveUpdate")
    uid = cluster.get("virtualmachineinstances", "restart-plane")["metadata"]["uid"]  # type: ignore[index]
    guest = server.host.machines["default_restart-plane"]
    cluster.patch_vm("restart-plane", spec_patch(domain={"cpu": {"sockets": 2}}))
    cluster.api.close()
    server.stop()
    server.start()
    fresh = Cluster(server.api())
    vmi = fresh.wait("virtualmachineinstances", "restart-plane", lambda o: observed_after("cpu", o))
    assert vmi["metadata"]["uid"] == uid  # type: ignore[index]
    assert server.host.machines["default_restart-plane"] is guest  # adopted, never booted again
    vm = fresh.wait("virtualmachines", "restart-plane", lambda o: not restart_required(o))
    assert printable(vm) == "Running"
    fresh.api.close()


def test_dry_run_shows_what_a_change_would_do_and_stores_nothing(cluster: Cluster) -> None:
    running_vm(cluster, "dry", strategy="LiveUpdate")
    current = cluster.get("virtualmachines", "dry")
    assert current is not None
    current["spec"]["template"]["spec"]["hostname"] = "renamed"
    projected = cluster.custom.replace_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", "dry", current, dry_run="All"
    )
    assert pending_paths(projected) == ["spec.template.spec.hostname"]
    assert restart_required(projected)
    assert not restart_required(cluster.get("virtualmachines", "dry"))
