"""``kubectl get nodes`` cells as kube-apiserver's printer fills them."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.apiserver.node_columns import NODE_COLUMNS, node_roles, node_status


def _node(
    *, ready: str | None = "True", unschedulable: bool = False, labels: dict[str, str] | None = None
) -> Any:
    conditions = [{"type": "Ready", "status": ready}] if ready is not None else []
    return {
        "metadata": {"name": "node01", "labels": labels or {}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v0.1.0-vmplane"}},
    }


@pytest.mark.parametrize(
    ("ready", "unschedulable", "expected"),
    [
        ("True", False, "Ready"),
        ("False", False, "NotReady"),
        ("Unknown", False, "NotReady"),
        (None, False, "Unknown"),
        ("True", True, "Ready,SchedulingDisabled"),
        ("False", True, "NotReady,SchedulingDisabled"),
    ],
    ids=["ready", "not-ready", "unknown-is-not-ready", "no-condition", "cordoned", "not-ready-cordoned"],
)
def test_status_column(ready: str | None, unschedulable: bool, expected: str) -> None:
    assert node_status(_node(ready=ready, unschedulable=unschedulable)) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, "<none>"),
        ({"node-role.kubernetes.io/control-plane": ""}, "control-plane"),
        (
            {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": ""},
            "control-plane,worker",
        ),
        ({"kubernetes.io/role": "master"}, "master"),
        ({"kubernetes.io/role": ""}, "<none>"),
        ({"node-role.kubernetes.io/": "x"}, "<none>"),
    ],
    ids=["none", "one-role", "sorted", "legacy-label", "empty-legacy-label", "empty-role-name"],
)
def test_roles_column(labels: dict[str, str], expected: str) -> None:
    assert node_roles(_node(labels=labels)) == expected


def test_the_default_columns_are_kubectls() -> None:
    assert [c.name for c in NODE_COLUMNS if c.priority == 0] == ["Name", "Status", "Roles", "Age", "Version"]


def test_the_version_cell_is_the_kubelet_version() -> None:
    version = next(c for c in NODE_COLUMNS if c.name == "Version")
    assert version.cell(_node(), None) == "v0.1.0-vmplane"  # type: ignore[arg-type]


def test_a_node_without_an_external_ip_shows_none_in_the_wide_column() -> None:
    external = next(c for c in NODE_COLUMNS if c.name == "External-IP")
    assert external.cell(_node(), None) == "<none>"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "status",
    [{"conditions": 5}, {"conditions": "Ready"}, {"conditions": [1, None]}, "x", None],
    ids=["number", "string", "non-objects", "status-string", "status-null"],
)
def test_a_malformed_node_status_shows_unknown_and_no_address(status: Any) -> None:
    node = {"metadata": {"name": "n"}, "status": status}
    internal = next(c for c in NODE_COLUMNS if c.name == "Internal-IP")
    assert (node_status(node), internal.cell(node, None)) == ("Unknown", "<none>")  # type: ignore[arg-type]
