"""The rollout lifecycle of test_rollout_e2e, unchanged, on the multi-process cluster.

The same test functions run here against ``vmplane apiserver``, two leader-elected ``vmplane
controller`` and three ``vmplane agent`` processes (simulated hypervisor, loopback), so Stage and
LiveUpdate, RestartRequired, revert, restart, cluster defaults and dry run are proven on the
separate-process topology as well as on ``vmplane serve``. Left out: the three tests that inject
failures into the in-process plane (a failed hotplug, the hypervisor process's death, a control-plane
restart), which the cluster's own suites cover by killing processes (test_cluster_processes,
test_cluster_node_loss).
"""

from __future__ import annotations

from collections.abc import Iterator

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    made = Cluster(api)
    yield made
    made.set_strategy(None)
    made.api.close()
