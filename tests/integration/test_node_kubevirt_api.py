"""The Node and the KubeVirt object as kubectl and the kubernetes Python client see them, against
``vmplane serve --hypervisor simulated``: a new user's first commands."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from test_api_support import ApiServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]

#: Seconds between heartbeats here (10 in production), so that one is seen renewed quickly.
HEARTBEAT = 1.0

USER_GUIDE_PATCH = (
    '[{"op":"add","path":"/spec/workloadUpdateStrategy/workloadUpdateMethods","value":["LiveMigrate"]}]'
)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_server(tmp_path_factory.mktemp("vmplane-node"), node_status_interval=HEARTBEAT)
    try:
        yield server
    finally:
        assert stop_server(server) == 0, "vmplane serve did not shut down cleanly"


@pytest.fixture
def core(api_server: ApiServer) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(api_server.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


def _table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_kubectl_get_node_shows_ready_roles_age_and_version(api_server: ApiServer) -> None:
    # The ready line comes before the node agent registers: wait for its first heartbeat.
    deadline = time.monotonic() + 30
    table = _table(api_server.kubectl("get", "node").stdout)
    while time.monotonic() < deadline and (len(table) < 2 or table[1][1] != "Ready"):
        time.sleep(0.2)
        table = _table(api_server.kubectl("get", "node").stdout)
    header, row = table
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert (row[0], row[1], row[2], row[4]) == ("node01", "Ready", "<none>", "v0.1.0-vmplane")


def test_kubectl_get_node_wide_shows_the_address_and_runtime(api_server: ApiServer) -> None:
    output = api_server.kubectl("get", "node", "-o", "wide").stdout
    header = output.splitlines()[0].split()
    assert header[5:8] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE"]
    assert "simulated://" in output.splitlines()[1]


def test_a_cordoned_node_shows_scheduling_disabled(api_server: ApiServer) -> None:
    api_server.kubectl("cordon", "node01")
    try:
        _, row = _table(api_server.kubectl("get", "node").stdout)
        assert row[1] == "Ready,SchedulingDisabled"
    finally:
        api_server.kubectl("uncordon", "node01")


def test_kubectl_describe_node_shows_addresses_capacity_and_system_info(api_server: ApiServer) -> None:
    result = api_server.kubectl("describe", "node", "node01", check=False)
    assert result.returncode == 0, result.stderr
    for section in ("Addresses:", "InternalIP:", "Capacity:", "Allocatable:", "System Info:", "Ready"):
        assert section in result.stdout
    assert "Non-terminated Pods:          (0 in total)" in result.stdout
    assert "HolderIdentity:  node01" in result.stdout  # the node's Lease


def test_the_python_client_lists_nodes_with_their_node_info(core: client.CoreV1Api) -> None:
    (node,) = core.list_node().items
    info = node.status.node_info
    assert (info.operating_system, info.kubelet_version) == ("linux", "v0.1.0-vmplane")
    assert info.container_runtime_version.startswith("simulated://")
    assert {a.type for a in node.status.addresses} == {"InternalIP", "Hostname"}
    assert set(node.status.allocatable) == {"cpu", "memory"}


def _heartbeat(core: client.CoreV1Api) -> object:
    node = core.read_node("node01")
    return next(c.last_heartbeat_time for c in node.status.conditions if c.type == "Ready")


def test_the_ready_heartbeat_advances(core: client.CoreV1Api) -> None:
    first = _heartbeat(core)
    deadline = time.monotonic() + 10 * HEARTBEAT
    while _heartbeat(core) == first:
        assert time.monotonic() < deadline, "the heartbeat was not renewed"
        time.sleep(HEARTBEAT / 4)


def test_pods_are_listed_empty(api_server: ApiServer, core: client.CoreV1Api) -> None:
    assert core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node01").items == []
    assert "No resources found" in api_server.kubectl("get", "pods", "-A").stderr


def test_creating_a_pod_is_405(api_server: ApiServer) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    status, body, _ = api_server.request("POST", "/api/v1/namespaces/default/pods", body=pod)
    assert (status, body["kind"], body["reason"]) == (405, "Status", "MethodNotAllowed")


def test_kubectl_wait_for_kubevirt_available_succeeds(api_server: ApiServer) -> None:
    result = api_server.kubectl(
        "-n",
        "kubevirt",
        "wait",
        "kv",
        "kubevirt",
        "--for",
        "condition=Available",
        "--timeout=30s",
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_kubevirt_object_reads_with_upstreams_defaults(api_server: ApiServer) -> None:
    kubevirt = json.loads(api_server.kubectl("-n", "kubevirt", "get", "kv", "kubevirt", "-o", "json").stdout)
    spec = kubevirt["spec"]
    assert (spec["imagePullPolicy"], spec["uninstallStrategy"]) == (
        "IfNotPresent",
        "BlockUninstallIfWorkloadsExist",
    )
    assert {"certificateRotateStrategy", "customizeComponents", "workloadUpdateStrategy"} <= set(spec)
    assert kubevirt["status"]["phase"] == "Deployed"


def test_the_user_guide_json_patch_applies_and_is_observed(api_server: ApiServer) -> None:
    api_server.kubectl("patch", "kv", "kubevirt", "-n", "kubevirt", "--type=json", "-p", USER_GUIDE_PATCH)
    kubevirt = json.loads(api_server.kubectl("-n", "kubevirt", "get", "kv", "kubevirt", "-o", "json").stdout)
    assert kubevirt["spec"]["workloadUpdateStrategy"] == {"workloadUpdateMethods": ["LiveMigrate"]}
    # kubectl wait holds out until the status observed the new generation.
    result = api_server.kubectl(
        "-n",
        "kubevirt",
        "wait",
        "kv",
        "kubevirt",
        "--for",
        "condition=Available",
        "--timeout=30s",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    observed = json.loads(api_server.kubectl("-n", "kubevirt", "get", "kv", "kubevirt", "-o", "json").stdout)
    assert observed["status"]["observedGeneration"] == observed["metadata"]["generation"]
