"""``/metrics`` after a scripted rollout, parsed with prometheus-client's own parser.

A real control plane runs in-process (API, controllers, scheduler, node agent on the simulated
hypervisor, a real SQLite store); the scenario creates a VM, changes it live and non-live, and
deletes it, and each test reads the values the scrape reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rollout_support import Cluster, InProcessServer, condition, printable
from test_api_support import SMALL_VM

from vmplane.apiserver.authz import Role
from vmplane.apiserver.tokens import create_token


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(cluster: Cluster, *, token: str | None = None) -> tuple[int, list[Sample]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = cluster.api.rest_client.pool_manager.request(
        "GET",
        cluster.api.configuration.host + "/metrics",
        headers={"Connection": "close", **headers},
        preload_content=True,
    )
    if response.status != 200:
        return response.status, []
    text = response.data.decode()
    samples = [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    return response.status, samples


def value(samples: list[Sample], metric: str, **labels: str) -> float | None:
    """The sum of ``metric``'s samples carrying ``labels`` (None when there is none)."""
    found = [s.value for s in samples if s.name == metric and labels.items() <= s.labels.items()]
    return sum(found) if found else None


@dataclass
class Scenario:
    server: InProcessServer
    cluster: Cluster
    token: str
    live: list[Sample]
    pending_reason: str
    after_delete: list[Sample]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    server = InProcessServer(data_dir=tmp_path_factory.mktemp("metrics"))
    server.start()
    cluster = Cluster(server.api())
    try:
        token = (server.data_dir / "token").read_text().strip()
        cluster.set_strategy("LiveUpdate")
        cluster.create_vm(SMALL_VM.format(name="web", run_strategy="Always"))
        cluster.create_vm(SMALL_VM.format(name="gone", run_strategy="Always"))
        for name in ("web", "gone"):
            cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running")
        cluster.patch_vm("web", {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}})
        cluster.wait(
            "virtualmachineinstances",
            "web",
            lambda o: ((o or {}).get("status") or {}).get("currentCPUTopology", {}).get("sockets") == 2,
        )
        cluster.patch_vm("web", {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 2}}}}}})
        vm: dict[str, Any] | None = cluster.wait(
            "virtualmachines",
            "web",
            lambda o: (condition(o, "RestartRequired") or {}).get("status") == "True",
        )
        reason = vm["status"]["pendingChanges"][0]["reason"]  # type: ignore[index]
        _, live = scrape(cluster, token=token)
        cluster.custom.delete_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", "gone"
        )
        cluster.wait("virtualmachines", "gone", lambda o: o is None)
        cluster.wait("virtualmachineinstances", "gone", lambda o: o is None)
        _, after = scrape(cluster, token=token)
        yield Scenario(server, cluster, token, live, reason, after)
    finally:
        cluster.api.close()
        server.stop()


def test_metrics_need_a_token(scenario: Scenario) -> None:
    assert scrape(scenario.cluster)[0] == 401
    assert scrape(scenario.cluster, token="not-a-token")[0] == 401


def test_a_viewer_token_may_read_metrics(scenario: Scenario) -> None:
    _, token = create_token(scenario.server.data_dir, Role.VIEWER)
    status, samples = scrape(scenario.cluster, token=token)
    assert status == 200
    assert value(samples, "kubevirt_vm_info", name="web") == 1


def test_vm_info_carries_the_printable_status(scenario: Scenario) -> None:
    assert value(scenario.live, "kubevirt_vm_info", namespace="default", name="web", status="Running") == 1


def test_vmi_info_carries_phase_and_node(scenario: Scenario) -> None:
    assert value(scenario.live, "kubevirt_vmi_info", name="web", phase="Running", node="node01") == 1


def test_vcpu_gauge_reports_the_live_hotplugged_count(scenario: Scenario) -> None:
    assert value(scenario.live, "kubevirt_vmi_vcpu_count", name="web") == 2
    assert (
        value(scenario.live, "kubevirt_vm_resource_requests", name="web", resource="cpu", unit="cores") == 2
    )


def test_memory_gauges_report_running_and_requested_bytes(scenario: Scenario) -> None:
    gib = float(1 << 30)
    assert value(scenario.live, "kubevirt_vmi_memory_domain_bytes", name="web") == gib
    assert value(scenario.live, "kubevirt_vm_resource_requests", name="web", resource="memory") == gib


def test_restart_required_is_one_only_for_the_vm_waiting(scenario: Scenario) -> None:
    assert value(scenario.live, "vmplane_vm_restart_required", name="web") == 1
    assert value(scenario.live, "vmplane_vm_restart_required", name="gone") == 0


def test_pending_changes_count_by_reason_and_source(scenario: Scenario) -> None:
    labels = {"name": "web", "reason": scenario.pending_reason, "source": "template"}
    assert value(scenario.live, "vmplane_vm_pending_changes", **labels) == 1


def test_the_live_cpu_change_counts_as_an_applied_live_update(scenario: Scenario) -> None:
    assert value(scenario.live, "vmplane_live_updates_total", family="cpu", result="applied") == 1
    assert value(scenario.live, "vmplane_hotplug_duration_seconds_count", kind="set_sockets") == 1


def test_work_queues_report_adds_and_durations(scenario: Scenario) -> None:
    assert (value(scenario.live, "workqueue_adds_total", name="vm-controller") or 0) >= 3
    assert (value(scenario.live, "workqueue_work_duration_seconds_count", name="node-agent") or 0) >= 1
    assert (value(scenario.live, "workqueue_queue_duration_seconds_count", name="scheduler") or 0) >= 1
    assert value(scenario.live, "workqueue_depth", name="vm-controller") is not None
    assert value(scenario.live, "workqueue_retries_total", name="vm-controller") is not None


def test_api_requests_are_timed_by_verb_and_resource(scenario: Scenario) -> None:
    patched = value(
        scenario.live,
        "apiserver_request_duration_seconds_count",
        verb="PATCH",
        group="kubevirt.io",
        resource="virtualmachines",
        scope="resource",
    )
    assert (patched or 0) >= 2
    assert value(
        scenario.live, "apiserver_request_total", verb="POST", resource="virtualmachines", code="201"
    )


def test_watches_are_long_running_and_not_in_the_latency_histogram(scenario: Scenario) -> None:
    assert value(scenario.live, "apiserver_request_duration_seconds_count", verb="WATCH") is None
    assert value(scenario.live, "apiserver_request_total", verb="WATCH", code="500") is None
    assert (
        value(scenario.live, "apiserver_current_inflight_requests", request_kind="readOnly") == 1
    )  # the scrape


def test_store_commits_and_fsyncs_are_timed(scenario: Scenario) -> None:
    commits = value(scenario.live, "vmplane_store_commit_duration_seconds_count")
    fsyncs = value(scenario.live, "vmplane_store_fsync_duration_seconds_count")
    assert (commits or 0) > 10
    assert fsyncs == commits


def test_a_deleted_vm_leaves_no_series(scenario: Scenario) -> None:
    assert value(scenario.live, "kubevirt_vm_info", name="gone") == 1
    assert not [s for s in scenario.after_delete if s.labels.get("name") == "gone"]
    assert value(scenario.after_delete, "kubevirt_vm_info", name="web") == 1


def test_unrouted_requests_mint_no_series(scenario: Scenario) -> None:
    pool, host = scenario.cluster.api.rest_client.pool_manager, scenario.cluster.api.configuration.host
    for path in ("/apis/made.up/v1/thing-1", "/api/v1/namespaces/default/thing-2/x/y"):
        pool.request("GET", host + path, headers={"Connection": "close"})
    pool.request("PROPFIND", host + "/api/v1/pods", headers={"Connection": "close"})
    _, samples = scrape(scenario.cluster, token=scenario.token)
    resources = {s.labels.get("resource") for s in samples if s.name == "apiserver_request_total"}
    assert not {"thing-1", "thing-2"} & resources
    assert value(samples, "apiserver_request_total", verb="PROPFIND") is None
    assert value(samples, "apiserver_request_total", verb="other", code="401") == 1
