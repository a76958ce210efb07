"""The rollout lifecycle of test_rollout_e2e, unchanged, on the multi-process cluster.

The same test functions run here against ``vmplane apiserver``, two leader-elected ``vmplane
controller`` and three ``vmplane agent`` processes (simulated hypervisor, loopback), so Stage and
LiveUpdate, RestartRequired, revert, restart, cluster defaults and dry run are proven on the
separate-process topology as well as on ``vmplane serve``: once on SQLite, and once over a 3-member
etcd with two API servers, driven through the second while the controllers may watch the first.
Left out: the three tests that inject failures into the in-process plane (a failed hotplug, the
hypervisor process's death, a control-plane restart), which the cluster's own suites cover by killing
processes (test_cluster_processes, test_cluster_node_loss, test_api_servers_etcd_leader).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config
from rollout_support import Cluster
from test_rollout_e2e import (
    test_cluster_default_change_is_pending_with_source_cluster,
    test_created_vm_reaches_running,
    test_dry_run_shows_what_a_change_would_do_and_stores_nothing,
    test_live_capable_change_reaches_the_guest_under_live_update,
    test_live_capable_change_waits_while_restart_is_required,
    test_non_live_change_lists_every_pending_change,
    test_restart_applies_every_pending_change_and_clears_the_condition,
    test_revert_subresource_clears_the_condition,
    test_reverting_the_template_clears_the_condition_and_the_waiting_change_goes_live,
    test_strategy_switch_from_stage_to_live_update_hotplugs_the_staged_change,
    test_the_same_change_is_staged_under_stage,
)

from vmplane.cli.dev_cluster import LocalCluster

__all__ = [
    "test_cluster_default_change_is_pending_with_source_cluster",
    "test_created_vm_reaches_running",
    "test_dry_run_shows_what_a_change_would_do_and_stores_nothing",
    "test_live_capable_change_reaches_the_guest_under_live_update",
    "test_live_capable_change_waits_while_restart_is_required",
    "test_non_live_change_lists_every_pending_change",
    "test_restart_applies_every_pending_change_and_clears_the_condition",
    "test_revert_subresource_clears_the_condition",
    "test_reverting_the_template_clears_the_condition_and_the_waiting_change_goes_live",
    "test_strategy_switch_from_stage_to_live_update_hotplugs_the_staged_change",
    "test_the_same_change_is_staged_under_stage",
]

pytestmark = [pytest.mark.integration, pytest.mark.requires("etcd"), pytest.mark.timeout(240)]


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    store = None if request.param == "sqlite" else request.param
    cluster = LocalCluster(root=tmp_path_factory.mktemp(f"cluster-{request.param}"), store=store)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop_all()


def last_api_server(local: LocalCluster, into: Path) -> Path:
    """The admin kubeconfig pointed at the cluster's last API server (the second one over etcd)."""
    assert local.admin_kubeconfig is not None
    text = local.admin_kubeconfig.read_text().replace(local.servers[0], local.servers[-1])
    into.write_text(text)
    into.chmod(0o600)
    return into


@pytest.fixture
def cluster(local: LocalCluster, tmp_path: Path) -> Iterator[Cluster]:
    kubeconfig = last_api_server(local, tmp_path / "kubeconfig")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    made = Cluster(api)
    yield made
    made.set_strategy(None)
    made.api.close()
