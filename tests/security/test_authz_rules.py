"""``authorize()`` per role, the request attributes it is given, and Kubernetes' 403 messages (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.apiserver.authz import Attributes, Decision, Role, User, authorize, forbidden_message, user_for
from vmplane.apiserver.request_info import node_name_written, request_attributes

ADMIN = user_for(Role.ADMIN)
VIEWER = user_for(Role.VIEWER)
CONTROLLERS = user_for(Role.CONTROLLERS)
NODE01 = user_for(Role.NODE, node="node01")
NODE02 = user_for(Role.NODE, node="node02")

KV = "kubevirt.io"
SUB = "subresources.kubevirt.io"


def vm(verb: str, name: str = "x", subresource: str = "", group: str = KV) -> Attributes:
    return Attributes(
        verb=verb,
        api_group=group,
        resource="virtualmachines",
        subresource=subresource,
        namespace="default",
        name=name,
    )


def vmi(
    verb: str,
    name: str = "x",
    *,
    bound_to: str | None = None,
    subresource: str = "",
    writes_node: str | None = None,
) -> Attributes:
    return Attributes(
        node_written=writes_node,
        verb=verb,
        api_group=KV,
        resource="virtualmachineinstances",
        subresource=subresource,
        namespace="default",
        name=name,
        node_binding=bound_to,
    )


def node(verb: str, name: str, subresource: str = "") -> Attributes:
    return Attributes(verb=verb, resource="nodes", name=name, subresource=subresource)


def lease(verb: str, name: str, namespace: str = "kube-node-lease") -> Attributes:
    return Attributes(
        verb=verb, api_group="coordination.k8s.io", resource="leases", namespace=namespace, name=name
    )


KUBEVIRT_CR = Attributes(
    verb="delete", api_group=KV, resource="kubevirts", namespace="kubevirt", name="kubevirt"
)
DELETE_DEFAULT = Attributes(verb="delete", resource="namespaces", namespace="default", name="default")
EVENT = Attributes(verb="create", resource="events", namespace="default")
SSAR = Attributes(verb="create", api_group="authorization.k8s.io", resource="selfsubjectaccessreviews")
DISCOVERY = Attributes(verb="get", path="/apis")

CASES: list[tuple[Any, ...]] = [
    # admin: everything
    ("admin-creates-vm", ADMIN, vm("create", ""), True),
    ("admin-deletes-node", ADMIN, node("delete", "node01"), True),
    ("admin-deletes-kubevirt", ADMIN, KUBEVIRT_CR, True),
    ("admin-starts-vm", ADMIN, vm("update", subresource="start", group=SUB), True),
    # Authorization allows it; admission refuses it (deletion_guards), as in Kubernetes.
    ("admin-may-delete-default-as-far-as-roles-go", ADMIN, DELETE_DEFAULT, True),
    # viewer: get/list/watch only
    ("viewer-gets-vm", VIEWER, vm("get"), True),
    ("viewer-lists-vms", VIEWER, vm("list", ""), True),
    ("viewer-watches-vmis", VIEWER, vmi("watch", ""), True),
    ("viewer-gets-vm-status", VIEWER, vm("get", subresource="status"), True),
    ("viewer-lists-nodes", VIEWER, node("list", ""), True),
    ("viewer-cannot-create-vm", VIEWER, vm("create", "")),
    ("viewer-cannot-patch-vm", VIEWER, vm("patch")),
    ("viewer-cannot-delete-vm", VIEWER, vm("delete")),
    ("viewer-cannot-start-vm", VIEWER, vm("update", subresource="start", group=SUB)),
    ("viewer-cannot-stop-vm", VIEWER, vm("update", subresource="stop", group=SUB)),
    ("viewer-cannot-read-console", VIEWER, vmi("get", subresource="console")),
    ("viewer-cannot-delete-node", VIEWER, node("delete", "node01")),
    ("viewer-cannot-delete-kubevirt", VIEWER, KUBEVIRT_CR),
    ("viewer-cannot-delete-default", VIEWER, DELETE_DEFAULT),
    ("viewer-asks-about-itself", VIEWER, SSAR, True),
    ("viewer-reads-discovery", VIEWER, DISCOVERY, True),
    # node: reads what an agent needs; writes only its own Node, Lease and VMIs
    ("node-lists-vmis", NODE01, vmi("list", ""), True),
    ("node-watches-nodes", NODE01, node("watch", ""), True),
    ("node-updates-own-node", NODE01, node("update", "node01"), True),
    ("node-patches-own-node-status", NODE01, node("patch", "node01", "status"), True),
    ("node-creates-own-node", NODE01, node("create", "node01"), True),
    ("node-cannot-patch-other-node", NODE02, node("patch", "node01")),
    ("node-cannot-delete-own-node", NODE01, node("delete", "node01")),
    ("node-updates-own-lease", NODE01, lease("update", "node01"), True),
    ("node-cannot-update-other-lease", NODE01, lease("update", "node02")),
    ("node-cannot-update-lease-elsewhere", NODE01, lease("update", "node01", namespace="default")),
    ("node-updates-own-vmi", NODE01, vmi("update", bound_to="node01"), True),
    ("node-patches-own-vmi-status", NODE01, vmi("patch", bound_to="node01", subresource="status"), True),
    ("node-cannot-update-other-nodes-vmi", NODE02, vmi("update", bound_to="node01")),
    ("node-cannot-update-unbound-vmi", NODE01, vmi("update", bound_to=None)),
    ("node-keeps-own-binding", NODE01, vmi("update", bound_to="node01", writes_node="node01"), True),
    ("node-cannot-rebind-own-vmi", NODE01, vmi("patch", bound_to="node01", writes_node="node02")),
    ("node-cannot-unbind-own-vmi", NODE01, vmi("patch", bound_to="node01", writes_node="")),
    ("node-cannot-delete-own-vmi", NODE01, vmi("delete", bound_to="node01")),
    ("node-cannot-create-vmi", NODE01, vmi("create", "")),
    ("node-cannot-patch-vm", NODE02, vm("patch")),
    ("node-creates-events", NODE01, EVENT, True),
    ("node-cannot-delete-kubevirt", NODE01, KUBEVIRT_CR),
    ("node-cannot-delete-default", NODE01, DELETE_DEFAULT),
    ("node-asks-about-itself", NODE01, SSAR, True),
    # controllers: VMs, VMIs, revisions, events
    ("controllers-create-vmi", CONTROLLERS, vmi("create", ""), True),
    ("controllers-update-vm-status", CONTROLLERS, vm("update", subresource="status"), True),
    ("controllers-delete-vmi", CONTROLLERS, vmi("delete"), True),
    (
        "controllers-create-revisions",
        CONTROLLERS,
        Attributes(verb="create", api_group="apps", resource="controllerrevisions", namespace="default"),
        True,
    ),
    ("controllers-create-events", CONTROLLERS, EVENT, True),
    ("controllers-read-nodes", CONTROLLERS, node("list", ""), True),
    ("controllers-taint-nodes", CONTROLLERS, node("update", "node01"), True),
    ("controllers-update-node-conditions", CONTROLLERS, node("update", "node01", "status"), True),
    ("controllers-cannot-delete-node", CONTROLLERS, node("delete", "node01")),
    ("controllers-cannot-delete-kubevirt", CONTROLLERS, KUBEVIRT_CR),
]


def _param(case: tuple[Any, ...]) -> Any:
    """``(id, user, attributes[, allowed])``: a case without ``allowed`` is a denial."""
    case_id, user, attrs, *allowed = case
    return pytest.param(user, attrs, bool(allowed and allowed[0]), id=case_id)


@pytest.mark.parametrize(("user", "attrs", "allowed"), [_param(c) for c in CASES])
def test_authorize_per_role(user: User, attrs: Attributes, allowed: bool) -> None:
    assert authorize(user, attrs).allowed is allowed


def test_unknown_identity_with_no_groups_may_do_nothing_with_resources() -> None:
    assert not authorize(User(name="nobody"), vm("get")).allowed


def test_forbidden_message_is_kubernetes_shape_in_a_namespace() -> None:
    attrs = vm("patch")
    assert forbidden_message(NODE02, attrs, authorize(NODE02, attrs)) == (
        'virtualmachines.kubevirt.io "x" is forbidden: User "system:node:node02" cannot patch resource '
        '"virtualmachines" in API group "kubevirt.io" in the namespace "default"'
    )


def test_forbidden_message_at_cluster_scope_names_the_subresource_and_the_reason() -> None:
    attrs = node("patch", "node01", "status")
    assert forbidden_message(NODE02, attrs, authorize(NODE02, attrs)) == (
        'nodes "node01" is forbidden: User "system:node:node02" cannot patch resource "nodes/status" '
        "in API group \"\" at the cluster scope: node 'node02' cannot modify node 'node01'"
    )


def test_forbidden_message_for_a_collection_has_no_name() -> None:
    attrs = vm("create", "")
    assert forbidden_message(VIEWER, attrs, Decision(False)) == (
        'virtualmachines.kubevirt.io is forbidden: User "viewer" cannot create resource "virtualmachines" '
        'in API group "kubevirt.io" in the namespace "default"'
    )


def test_node_token_needs_a_node_name() -> None:
    with pytest.raises(ValueError, match="node name"):
        user_for(Role.NODE)


def test_node_identity_is_in_the_nodes_group() -> None:
    assert NODE01.name == "system:node:node01"
    assert "system:nodes" in NODE01.groups


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        pytest.param(
            "GET",
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
            {},
            Attributes("list", KV, "virtualmachines", "", "default", ""),
            id="list",
        ),
        pytest.param(
            "GET",
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
            {"watch": "true"},
            Attributes("watch", KV, "virtualmachines", "", "default", ""),
            id="watch",
        ),
        pytest.param(
            "PATCH",
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/x/status",
            {},
            Attributes("patch", KV, "virtualmachineinstances", "status", "default", "x"),
            id="status-subresource",
        ),
        pytest.param(
            "PUT",
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/x/start",
            {},
            Attributes("update", SUB, "virtualmachines", "start", "default", "x"),
            id="start",
        ),
        pytest.param(
            "DELETE",
            "/api/v1/namespaces/default",
            {},
            Attributes("delete", "", "namespaces", "", "default", "default"),
            id="namespace-itself",
        ),
        pytest.param(
            "DELETE",
            "/api/v1/namespaces/default/events",
            {},
            Attributes("deletecollection", "", "events", "", "default", ""),
            id="deletecollection",
        ),
        pytest.param(
            "PUT",
            "/api/v1/nodes/node01/status",
            {},
            Attributes("update", "", "nodes", "status", "", "node01"),
            id="cluster-scoped",
        ),
        pytest.param("GET", "/openapi/v3", {}, Attributes("get"), id="non-resource"),
    ],
)
def test_request_attributes(method: str, path: str, query: dict[str, str], expected: Attributes) -> None:
    got = request_attributes(method, path, query)
    assert (got.verb, got.api_group, got.resource, got.subresource, got.namespace, got.name) == (
        expected.verb,
        expected.api_group,
        expected.resource,
        expected.subresource,
        expected.namespace,
        expected.name,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(b'{"metadata":{"labels":{"a":"b"}}}', "application/merge-patch+json", None, id="leaves"),
        pytest.param(
            b'{"status":{"nodeName":"node02"}}', "application/merge-patch+json", "node02", id="merge"
        ),
        pytest.param(b'{"status":null}', "application/merge-patch+json", "", id="merge-clears-status"),
        pytest.param(b'{"status":{"phase":"Running"}}', "application/json", None, id="put-without-node"),
        pytest.param(b"status:\n  nodeName: node03\n", "application/apply-patch+yaml", "node03", id="apply"),
        pytest.param(
            b'[{"op":"replace","path":"/status/nodeName","value":"node02"}]',
            "application/json-patch+json",
            "node02",
            id="json-patch-replace",
        ),
        pytest.param(
            b'[{"op":"remove","path":"/status/nodeName"}]',
            "application/json-patch+json",
            "",
            id="json-patch-remove",
        ),
        pytest.param(
            b'[{"op":"replace","path":"/status","value":{"nodeName":"node04"}}]',
            "application/json-patch+json",
            "node04",
            id="json-patch-whole-status",
        ),
        pytest.param(b"{not json", "application/json", None, id="malformed"),
    ],
)
def test_node_name_written(body: bytes, content_type: str, expected: str | None) -> None:
    assert node_name_written(body, content_type) == expected


def test_rebinding_denial_names_the_rule() -> None:
    attrs = vmi("patch", bound_to="node01", writes_node="node02")
    assert forbidden_message(NODE01, attrs, authorize(NODE01, attrs)) == (
        'virtualmachineinstances.kubevirt.io "x" is forbidden: '
        "node 'node01' cannot change the node this object is bound to"
    )
