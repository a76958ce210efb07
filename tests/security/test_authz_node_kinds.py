"""Who may read what ``kubectl describe node`` asks for: the Node, its Lease, pods and events (pure)."""

from __future__ import annotations

import pytest

from vmplane.apiserver.authz import Attributes, Role, authorize, user_for

VIEWER = user_for(Role.VIEWER)
NODE01 = user_for(Role.NODE, node="node01")
DESCRIBE_NODE_READS = [
    Attributes(verb="get", resource="nodes", name="node01"),
    Attributes(
        verb="get",
        api_group="coordination.k8s.io",
        resource="leases",
        namespace="kube-node-lease",
        name="node01",
    ),
    Attributes(verb="list", resource="pods"),
    Attributes(verb="list", resource="events"),
]


@pytest.mark.parametrize("attrs", DESCRIBE_NODE_READS, ids=["node", "lease", "pods", "events"])
def test_a_viewer_may_read_what_describe_node_reads(attrs: Attributes) -> None:
    assert authorize(VIEWER, attrs).allowed


@pytest.mark.parametrize("verb", ["get", "list", "watch"])
def test_a_node_may_read_pods(verb: str) -> None:
    assert authorize(NODE01, Attributes(verb=verb, resource="pods", namespace="default")).allowed


def test_a_viewer_may_not_create_a_pod() -> None:
    assert not authorize(VIEWER, Attributes(verb="create", resource="pods", namespace="default")).allowed
