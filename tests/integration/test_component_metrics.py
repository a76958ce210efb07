"""``/metrics`` of ``vmplane controller`` and ``vmplane agent`` as separate processes (started by
``LocalCluster``): HTTPS with a self-signed certificate, a token the API server vouches for (a
SelfSubjectReview), the controllers' work queues and fleet series, the agent's queue and hotplug
histogram, parsed with prometheus-client's parser after a live vCPU hotplug.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rollout_support import Cluster
from test_cluster_processes import api_of, running_vm

from vmplane.cli.dev_cluster import LocalCluster
from vmplane.client.config import read_kubeconfig

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=tmp_path_factory.mktemp("metrics"))
    try:
        cluster.start(controllers=1, nodes=("node01",))
        api = api_of(cluster)
        try:
            wait_nodes_ready_one(api)
            api.set_strategy("LiveUpdate")
            running_vm(api, "web", "node01")
            api.patch_vm("web", {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}})
            api.wait(
                "virtualmachineinstances",
                "web",
                lambda o: ((o or {}).get("status") or {}).get("currentCPUTopology", {}).get("sockets") == 2,
                timeout=60,
            )
        finally:
            api.api.close()
        yield cluster
    finally:
        cluster.stop_all()


def wait_nodes_ready_one(cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(
            c.type == "Ready" and c.status == "True"
            for n in cluster.core.list_node().items
            for c in (n.status and n.status.conditions) or []
        ):
            return
        time.sleep(0.3)
    raise AssertionError("node01 never became Ready")


def admin_token(local: LocalCluster) -> str:
    assert local.admin_kubeconfig is not None
    token = read_kubeconfig(local.admin_kubeconfig).token
    assert token is not None
    return token


def scrape(url: str, token: str | None, *, ca: str | None = None) -> tuple[int, str]:
    """(status, body) of ``GET url``; checked against ``ca`` when given (the agent's own CA)."""
    context = ssl.create_default_context(cafile=ca)
    if ca is None:  # the controller's certificate is made in a temporary directory of its own
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, metric: str, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def agent_ca(local: LocalCluster) -> str:
    return str(local.root / "node01" / "metrics" / "tls" / "ca.crt")


def test_the_controller_serves_its_work_queues_and_the_fleet(local: LocalCluster) -> None:
    status, body = scrape(local.metrics_url("controller1"), admin_token(local))
    assert status == 200
    found = samples(body)
    assert (value(found, "workqueue_adds_total", name="vm-controller") or 0) > 0
    assert (value(found, "workqueue_adds_total", name="scheduler") or 0) > 0
    assert value(found, "workqueue_depth", name="vm-controller") is not None
    assert value(found, "kubevirt_vm_info", namespace="default", name="web", status="Running") == 1
    assert value(found, "kubevirt_vmi_vcpu_count", namespace="default", name="web", node="node01") == 2


def test_the_agent_serves_its_work_queue_and_hotplug_histogram(local: LocalCluster) -> None:
    status, body = scrape(local.metrics_url("node01"), admin_token(local), ca=agent_ca(local))
    assert status == 200
    found = samples(body)
    assert (value(found, "workqueue_adds_total", name="node-agent") or 0) > 0
    assert value(found, "vmplane_hotplug_duration_seconds_count", kind="set_sockets") == 1
    assert value(found, "vmplane_live_updates_total", family="cpu", result="applied") == 1
    assert value(found, "workqueue_adds_total", name="vm-controller") is None  # the controllers' own


def test_metrics_without_a_token_are_401(local: LocalCluster) -> None:
    assert scrape(local.metrics_url("controller1"), None)[0] == 401
    assert scrape(local.metrics_url("node01"), None, ca=agent_ca(local))[0] == 401


def test_a_token_the_api_server_does_not_know_is_401(local: LocalCluster) -> None:
    status, body = scrape(local.metrics_url("node01"), "not-a-token", ca=agent_ca(local))
    assert status == 401
    assert "workqueue" not in body


@pytest.mark.parametrize("component", ["controller", "agent"])
def test_a_malformed_metrics_address_exits_2_naming_the_flag_value(
    local: LocalCluster, component: str, tmp_path: Path
) -> None:
    kubeconfig = str(
        local.root / ("controller1.kubeconfig" if component == "controller" else "node01.kubeconfig")
    )
    extra = (
        ()
        if component == "controller"
        else ("--node", "node01", "--data-dir", str(tmp_path), "--hypervisor", "simulated")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmplane.cli.main",
            component,
            "--kubeconfig",
            kubeconfig,
            *extra,
            "--metrics-listen",
            "127.0.0.1:metrics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "expected HOST:PORT, got '127.0.0.1:metrics'" in result.stderr
