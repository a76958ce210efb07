"""Identities against a real ``vmplane serve --hypervisor simulated``, through kubectl and HTTPS.

Every token is made with ``vmplane token create`` and used through the kubeconfig it printed.
"""

from __future__ import annotations

import json

import pytest
from authz_support import AuthzServer, Identity, authz_server, wait_until
from test_api_support import SMALL_VM

__all__ = ["authz_server"]

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl")]

NS = "/apis/kubevirt.io/v1/namespaces/default"
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces/default"
LABEL_PATCH = {"metadata": {"labels": {"touched": "yes"}}}


@pytest.fixture(scope="module")
def viewer(authz_server: AuthzServer) -> Identity:
    return authz_server.identity("viewer")


@pytest.fixture(scope="module")
def node01(authz_server: AuthzServer) -> Identity:
    return authz_server.identity("node", "node01")


@pytest.fixture(scope="module")
def node02(authz_server: AuthzServer) -> Identity:
    return authz_server.identity("node", "node02")


@pytest.fixture(scope="module")
def halted_vm(authz_server: AuthzServer) -> str:
    result = authz_server.kubectl(
        authz_server.admin, "apply", "-f", "-", stdin=SMALL_VM.format(name="halted", run_strategy="Halted")
    )
    assert result.returncode == 0, result.stderr
    return "halted"


def _vmi_node(server: AuthzServer, name: str) -> str | None:
    status, body = server.request(server.admin, "GET", f"{NS}/virtualmachineinstances/{name}")
    return (body.get("status") or {}).get("nodeName") if status == 200 else None


@pytest.fixture(scope="module")
def bound_vmi(authz_server: AuthzServer) -> str:
    """A VMI the scheduler bound to node01 (the simulated hypervisor runs it)."""
    result = authz_server.kubectl(
        authz_server.admin, "apply", "-f", "-", stdin=SMALL_VM.format(name="bound", run_strategy="Always")
    )
    assert result.returncode == 0, result.stderr
    wait_until(lambda: _vmi_node(authz_server, "bound") == "node01", what="VMI bound to node01")
    return "bound"


def _is_forbidden(status: int, body: dict[str, object]) -> bool:
    return status == 403 and body.get("reason") == "Forbidden" and body.get("kind") == "Status"


# -- viewer ------------------------------------------------------------------------------------------


def test_viewer_reads_vms(authz_server: AuthzServer, viewer: Identity, halted_vm: str) -> None:
    result = authz_server.kubectl(viewer, "get", "vm", halted_vm, "-o", "name")
    assert result.stdout.strip() == f"virtualmachine.kubevirt.io/{halted_vm}"


def test_viewer_watches_vms(authz_server: AuthzServer, viewer: Identity, halted_vm: str) -> None:
    status, _ = authz_server.request(viewer, "GET", f"{NS}/virtualmachines?watch=true&timeoutSeconds=1")
    assert status == 200


def test_viewer_cannot_create_a_vm(authz_server: AuthzServer, viewer: Identity) -> None:
    result = authz_server.kubectl(
        viewer, "create", "-f", "-", stdin=SMALL_VM.format(name="v", run_strategy="Halted")
    )
    assert result.returncode != 0
    assert (
        'virtualmachines.kubevirt.io is forbidden: User "viewer" cannot create resource "virtualmachines" '
        'in API group "kubevirt.io" in the namespace "default"'
    ) in result.stderr


def test_viewer_cannot_patch_a_vm(authz_server: AuthzServer, viewer: Identity, halted_vm: str) -> None:
    status, body = authz_server.request(
        viewer, "PATCH", f"{NS}/virtualmachines/{halted_vm}", body=LABEL_PATCH
    )
    assert _is_forbidden(status, body)
    assert body["message"] == (
        f'virtualmachines.kubevirt.io "{halted_vm}" is forbidden: User "viewer" cannot patch resource '
        '"virtualmachines" in API group "kubevirt.io" in the namespace "default"'
    )
    assert body["details"] == {"name": halted_vm, "group": "kubevirt.io", "kind": "virtualmachines"}


def test_viewer_cannot_delete_a_vm(authz_server: AuthzServer, viewer: Identity, halted_vm: str) -> None:
    result = authz_server.kubectl(viewer, "delete", "vm", halted_vm, "--wait=false")
    assert "Forbidden" in result.stderr
    assert authz_server.kubectl(authz_server.admin, "get", "vm", halted_vm).returncode == 0


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_viewer_cannot_start_or_stop_a_vm(
    authz_server: AuthzServer, viewer: Identity, halted_vm: str, action: str
) -> None:
    status, body = authz_server.request(viewer, "PUT", f"{SUBRESOURCES}/virtualmachines/{halted_vm}/{action}")
    assert _is_forbidden(status, body)
    assert (
        f'cannot update resource "virtualmachines/{action}" in API group "subresources.kubevirt.io"'
        in str(body["message"])
    )


@pytest.mark.parametrize("resource", ["virtualmachines", "virtualmachineinstances"])
@pytest.mark.parametrize("action", ["addvolume", "removevolume"])
def test_viewer_cannot_hotplug_volumes(
    authz_server: AuthzServer, viewer: Identity, halted_vm: str, resource: str, action: str
) -> None:
    body = {"name": "data"}
    status, reply = authz_server.request(
        viewer, "PUT", f"{SUBRESOURCES}/{resource}/{halted_vm}/{action}", body=body
    )
    assert _is_forbidden(status, reply)
    assert f'cannot update resource "{resource}/{action}" in API group "subresources.kubevirt.io"' in str(
        reply["message"]
    )


# -- node --------------------------------------------------------------------------------------------


def test_node_updates_a_vmi_bound_to_it(authz_server: AuthzServer, node01: Identity, bound_vmi: str) -> None:
    status, body = authz_server.request(
        node01, "PATCH", f"{NS}/virtualmachineinstances/{bound_vmi}", body=LABEL_PATCH
    )
    assert status == 200, body
    assert body["metadata"]["labels"]["touched"] == "yes"


def test_node_cannot_touch_another_nodes_vmi(
    authz_server: AuthzServer, node02: Identity, bound_vmi: str
) -> None:
    status, body = authz_server.request(
        node02, "PATCH", f"{NS}/virtualmachineinstances/{bound_vmi}", body=LABEL_PATCH
    )
    assert _is_forbidden(status, body)
    assert body["message"] == (
        f'virtualmachineinstances.kubevirt.io "{bound_vmi}" is forbidden: User "system:node:node02" cannot '
        'patch resource "virtualmachineinstances" in API group "kubevirt.io" in the namespace "default": '
        "no relationship found between node 'node02' and this object"
    )


def test_node_cannot_update_another_nodes_vmi_status(
    authz_server: AuthzServer, node02: Identity, bound_vmi: str
) -> None:
    path = f"{NS}/virtualmachineinstances/{bound_vmi}/status"
    status, body = authz_server.request(node02, "PATCH", path, body={"status": {"phase": "Failed"}})
    assert _is_forbidden(status, body)
    assert _vmi_node(authz_server, bound_vmi) == "node01"


def test_node_cannot_hand_its_vmi_to_another_node(
    authz_server: AuthzServer, node01: Identity, bound_vmi: str
) -> None:
    path = f"{NS}/virtualmachineinstances/{bound_vmi}/status"
    status, body = authz_server.request(node01, "PATCH", path, body={"status": {"nodeName": "node02"}})
    assert _is_forbidden(status, body)
    assert _vmi_node(authz_server, bound_vmi) == "node01"


def test_node_updates_its_own_node(authz_server: AuthzServer, node01: Identity) -> None:
    result = authz_server.kubectl(node01, "label", "node", "node01", "checked=yes", "--overwrite")
    assert result.returncode == 0, result.stderr


def test_node_cannot_touch_another_node(authz_server: AuthzServer, node02: Identity) -> None:
    result = authz_server.kubectl(node02, "label", "node", "node01", "hijacked=yes")
    assert result.returncode != 0
    assert (
        'nodes "node01" is forbidden: User "system:node:node02" cannot patch resource "nodes" '
        "in API group \"\" at the cluster scope: node 'node02' cannot modify node 'node01'"
    ) in result.stderr


def test_node_cannot_patch_a_vm(authz_server: AuthzServer, node02: Identity, halted_vm: str) -> None:
    status, body = authz_server.request(
        node02, "PATCH", f"{NS}/virtualmachines/{halted_vm}", body=LABEL_PATCH
    )
    assert _is_forbidden(status, body)
    assert body["message"] == (
        f'virtualmachines.kubevirt.io "{halted_vm}" is forbidden: User "system:node:node02" cannot patch '
        'resource "virtualmachines" in API group "kubevirt.io" in the namespace "default"'
    )


# -- what no token but admin may do, and what no one may ---------------------------------------------


@pytest.mark.parametrize("who", ["viewer", "node01"])
def test_only_admin_deletes_the_kubevirt_object(
    authz_server: AuthzServer, who: str, request: pytest.FixtureRequest
) -> None:
    identity: Identity = request.getfixturevalue(who)
    status, body = authz_server.request(
        identity, "DELETE", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt"
    )
    assert _is_forbidden(status, body)
    assert (
        authz_server.request(
            authz_server.admin, "GET", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt"
        )[0]
        == 200
    )


@pytest.mark.parametrize("who", ["viewer", "node01", "admin"])
def test_no_one_deletes_namespace_default(
    authz_server: AuthzServer, who: str, request: pytest.FixtureRequest
) -> None:
    identity = authz_server.admin if who == "admin" else request.getfixturevalue(who)
    result = authz_server.kubectl(identity, "delete", "namespace", "default", "--wait=false")
    assert result.returncode != 0
    expected = (
        'namespaces "default" is forbidden: this namespace may not be deleted'
        if who == "admin"
        else 'namespaces "default" is forbidden: User "'
    )
    assert expected in result.stderr
    assert authz_server.kubectl(authz_server.admin, "get", "namespace", "default").returncode == 0


# -- kubectl auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "answer", "code"), [("admin", "yes", 0), ("viewer", "no", 1), ("node01", "no", 1)]
)
def test_can_i_create_vm_answers_per_token(
    authz_server: AuthzServer, who: str, answer: str, code: int, request: pytest.FixtureRequest
) -> None:
    identity = authz_server.admin if who == "admin" else request.getfixturevalue(who)
    result = authz_server.kubectl(identity, "auth", "can-i", "create", "vm")
    assert (result.stdout.strip(), result.returncode) == (answer, code)


@pytest.mark.parametrize(("who", "answer"), [("node01", "yes"), ("node02", "no")])
def test_can_i_update_a_named_vmi_answers_per_node(
    authz_server: AuthzServer, bound_vmi: str, who: str, answer: str, request: pytest.FixtureRequest
) -> None:
    result = authz_server.kubectl(request.getfixturevalue(who), "auth", "can-i", "update", f"vmi/{bound_vmi}")
    assert result.stdout.split(" ")[0].strip() == answer


def test_can_i_get_vm_as_viewer_is_yes(authz_server: AuthzServer, viewer: Identity) -> None:
    result = authz_server.kubectl(viewer, "auth", "can-i", "get", "vm")
    assert (result.stdout.strip(), result.returncode) == ("yes", 0)


@pytest.mark.parametrize(
    ("who", "username", "group"),
    [
        ("admin", "admin", "system:masters"),
        ("viewer", "viewer", "vmplane:viewers"),
        ("node02", "system:node:node02", "system:nodes"),
    ],
)
def test_whoami_names_the_identity(
    authz_server: AuthzServer, who: str, username: str, group: str, request: pytest.FixtureRequest
) -> None:
    identity = authz_server.admin if who == "admin" else request.getfixturevalue(who)
    result = authz_server.kubectl(identity, "auth", "whoami", "-o", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["status"]["userInfo"]
    assert (info["username"], group in info["groups"]) == (username, True)


# -- tokens come and go while the server runs --------------------------------------------------------


def test_unknown_token_is_unauthorized(authz_server: AuthzServer) -> None:
    status, body = authz_server.request("not-a-token", "GET", f"{NS}/virtualmachines")
    assert (status, body.get("reason")) == (401, "Unauthorized")


def test_revoked_token_is_refused_without_a_restart(authz_server: AuthzServer) -> None:
    identity = authz_server.identity("viewer")
    assert authz_server.request(identity, "GET", f"{NS}/virtualmachines")[0] == 200
    listed = authz_server.vmplane("token", "list", "--data-dir", str(authz_server.data_dir)).stdout
    assert identity.token not in listed
    token_id = next(line.split()[0] for line in reversed(listed.splitlines()) if " viewer " in line)
    authz_server.vmplane("token", "revoke", token_id, "--data-dir", str(authz_server.data_dir))
    wait_until(
        lambda: authz_server.request(identity, "GET", f"{NS}/virtualmachines")[0] == 401,
        timeout=2.0,
        what="revoked token refused",
    )


# -- the Node comes back -----------------------------------------------------------------------------


def test_deleted_node_is_registered_again_and_scheduling_works(authz_server: AuthzServer) -> None:
    admin = authz_server.admin
    assert authz_server.request(admin, "DELETE", "/api/v1/nodes/node01")[0] == 200
    wait_until(
        lambda: authz_server.request(admin, "GET", "/api/v1/nodes/node01")[0] == 200,
        timeout=5.0,
        what="node01 registered again",
    )
    result = authz_server.kubectl(
        admin, "apply", "-f", "-", stdin=SMALL_VM.format(name="after", run_strategy="Always")
    )
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: _vmi_node(authz_server, "after") == "node01", what="VMI bound after the Node came back"
    )


def test_discovery_lists_the_review_kinds(authz_server: AuthzServer, viewer: Identity) -> None:
    result = authz_server.kubectl(viewer, "api-resources", "-o", "name")
    names = set(result.stdout.split())
    assert {
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
    } <= names


def test_legacy_discovery_lists_the_review_kinds(authz_server: AuthzServer, viewer: Identity) -> None:
    status, body = authz_server.request(viewer, "GET", "/apis/authorization.k8s.io/v1")
    assert status == 200
    assert [r["name"] for r in body["resources"]] == ["selfsubjectaccessreviews"]


def test_access_review_without_attributes_is_a_bad_request(
    authz_server: AuthzServer, viewer: Identity
) -> None:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}
    status, body = authz_server.request(
        viewer,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        body=review,
        content_type="application/json",
    )
    assert (status, body["reason"]) == (400, "BadRequest")
    assert "exactly one of nonResourceAttributes or resourceAttributes" in body["message"]


def test_access_review_in_json_answers_from_the_same_rules(
    authz_server: AuthzServer, viewer: Identity
) -> None:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"verb": "delete", "group": "", "resource": "nodes", "name": "node01"}
        },
    }
    status, body = authz_server.request(
        viewer,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        body=review,
        content_type="application/json",
    )
    assert (status, body["status"]["allowed"]) == (201, False)
