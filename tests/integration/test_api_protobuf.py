"""Media types against ``vmplane serve``: kubectl's protobuf bodies, 415 for the rest, ``/openapi/v2``
in the form ``Accept`` asks for, and apiVersion/kind filled from the URL (kubectl and the Python client).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from test_api_support import ApiServer, api_server

from vmplane.apiserver.openapi_protobuf import MESSAGES as OPENAPI_MESSAGES
from vmplane.apiserver.protobuf import MEDIA_TYPE as PROTOBUF
from vmplane.apiserver.protobuf import MessageClasses, encode_object

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

NAMESPACES = "/api/v1/namespaces"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
EVENT_YAML = """\
apiVersion: v1
kind: Event
metadata: {name: hello.1, namespace: default}
involvedObject: {kind: Namespace, name: default, apiVersion: v1}
reason: Hello
message: from a file
type: Normal
"""


@pytest.fixture
def core(api_server: ApiServer) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(api_server.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def custom(api_server: ApiServer) -> Iterator[client.CustomObjectsApi]:
    api_client = config.new_client_from_config(config_file=str(api_server.kubeconfig))
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def _stored(api_server: ApiServer, path: str) -> dict[str, Any]:
    status, body, _ = api_server.request("GET", path)
    assert status == 200, body
    return body


# --- kubectl -----------------------------------------------------------------------------------


def test_kubectl_create_namespace_sends_protobuf_and_succeeds(api_server: ApiServer) -> None:
    result = api_server.kubectl("create", "namespace", "pb-create", "-v=8")
    assert f"Content-Type: {PROTOBUF}" in result.stderr
    assert _stored(api_server, f"{NAMESPACES}/pb-create")["metadata"]["name"] == "pb-create"


def test_kubectl_label_namespace(api_server: ApiServer) -> None:
    api_server.kubectl("create", "namespace", "pb-label")
    api_server.kubectl("label", "ns", "pb-label", "a=b")
    assert _stored(api_server, f"{NAMESPACES}/pb-label")["metadata"]["labels"]["a"] == "b"


def test_kubectl_create_from_a_namespace_file(api_server: ApiServer) -> None:
    manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pb-file\n"
    api_server.kubectl("create", "-f", "-", stdin=manifest)
    assert _stored(api_server, f"{NAMESPACES}/pb-file")["metadata"]["name"] == "pb-file"


def test_kubectl_create_from_an_event_file(api_server: ApiServer) -> None:
    api_server.kubectl("create", "-f", "-", stdin=EVENT_YAML)
    assert _stored(api_server, "/api/v1/namespaces/default/events/hello.1")["message"] == "from a file"


def test_kubectl_delete_namespace(api_server: ApiServer) -> None:
    api_server.kubectl("create", "namespace", "pb-delete")
    api_server.kubectl("delete", "ns", "pb-delete", "--wait=false")
    status, body, _ = api_server.request("GET", f"{NAMESPACES}/pb-delete")
    assert status == 404 or body["metadata"].get("deletionTimestamp"), body


@pytest.mark.parametrize(
    ("manifest", "kind", "version"),
    [
        (
            "apiVersion: pool.kubevirt.io/v1alpha1\nkind: VirtualMachinePool\nmetadata: {name: p}\n",
            "VirtualMachinePool",
            "pool.kubevirt.io/v1alpha1",
        ),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", "Deployment", "apps/v1"),
    ],
    ids=["virtualmachinepool", "deployment"],
)
def test_kubectl_apply_of_an_unserved_kind_says_no_matches_for_kind(
    api_server: ApiServer, manifest: str, kind: str, version: str
) -> None:
    result = api_server.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode == 1
    assert f'no matches for kind "{kind}" in version "{version}"' in result.stderr, result.stderr
    assert "resource mapping not found for name:" in result.stderr


# --- raw requests ------------------------------------------------------------------------------


def test_protobuf_node_body_is_stored_as_its_json_form(api_server: ApiServer) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "pb-node", "labels": {"kubernetes.io/hostname": "pb-node"}},
        "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
    }
    status, body, _ = api_server.request(
        "POST", "/api/v1/nodes", body=encode_object(node), content_type=PROTOBUF
    )
    assert status == 201, body
    stored = _stored(api_server, "/api/v1/nodes/pb-node")
    assert (stored["metadata"]["labels"], stored["spec"]["taints"]) == (
        {"kubernetes.io/hostname": "pb-node"},
        [{"key": "k", "effect": "NoSchedule"}],
    )


def test_protobuf_put_replaces_a_namespace(api_server: ApiServer) -> None:
    api_server.kubectl("create", "namespace", "pb-put")
    current = _stored(api_server, f"{NAMESPACES}/pb-put")
    replacement = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "pb-put",
            "resourceVersion": current["metadata"]["resourceVersion"],
            "annotations": {"via": "protobuf"},
        },
    }
    status, body, _ = api_server.request(
        "PUT", f"{NAMESPACES}/pb-put", body=encode_object(replacement), content_type=PROTOBUF
    )
    assert status == 200, body
    assert _stored(api_server, f"{NAMESPACES}/pb-put")["metadata"]["annotations"] == {"via": "protobuf"}


def test_protobuf_controller_revision_keeps_its_data(api_server: ApiServer) -> None:
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "pb-rev"},
        "data": {"spec": {"running": True}},
        "revision": 4,
    }
    path = "/apis/apps/v1/namespaces/default/controllerrevisions"
    status, body, _ = api_server.request("POST", path, body=encode_object(revision), content_type=PROTOBUF)
    assert status == 201, body
    stored = _stored(api_server, f"{path}/pb-rev")
    assert (stored["data"], stored["revision"]) == ({"spec": {"running": True}}, 4)


def test_protobuf_delete_options_are_read(api_server: ApiServer) -> None:
    api_server.kubectl("create", "namespace", "pb-dry-delete")
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "dryRun": ["All"]}
    status, body, _ = api_server.request(
        "DELETE", f"{NAMESPACES}/pb-dry-delete", body=encode_object(options), content_type=PROTOBUF
    )
    assert status == 200, body
    assert not _stored(api_server, f"{NAMESPACES}/pb-dry-delete")["metadata"].get("deletionTimestamp")


def test_protobuf_body_for_a_kubevirt_kind_is_415(api_server: ApiServer) -> None:
    before = api_server.revision()
    status, body, _ = api_server.request("POST", VMS, body=b"k8s\x00\x0a\x00", content_type=PROTOBUF)
    assert (status, body["reason"], body["message"]) == (
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml",
    )
    assert api_server.revision() == before


def test_unknown_media_type_is_415_listing_protobuf_for_a_built_in_kind(api_server: ApiServer) -> None:
    before = api_server.revision()
    status, body, _ = api_server.request("POST", NAMESPACES, body=b"name: x", content_type="text/plain")
    assert (status, body["reason"], body["message"]) == (
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, {PROTOBUF}",
    )
    assert api_server.revision() == before


def test_malformed_protobuf_is_400_and_stores_nothing(api_server: ApiServer) -> None:
    before = api_server.revision()
    status, body, _ = api_server.request("POST", NAMESPACES, body=b"k8s\x00\x0a\xff", content_type=PROTOBUF)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith("error decoding protobuf: malformed protobuf envelope")
    assert api_server.revision() == before


def test_protobuf_of_another_kind_on_the_url_is_400_naming_both(api_server: ApiServer) -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"}}
    status, body, _ = api_server.request("POST", NAMESPACES, body=encode_object(event), content_type=PROTOBUF)
    assert (status, body["message"]) == (
        400,
        "the kind in the data (Event) does not match the expected kind (Namespace)",
    )


def test_openapi_v2_answers_a_protobuf_accept_with_a_document(api_server: ApiServer) -> None:
    response = api_server.http().request(
        "GET",
        api_server.url + "/openapi/v2",
        headers={"Authorization": f"Bearer {api_server.token}", "Accept": OPENAPI_V2_PROTOBUF},
        timeout=30,
    )
    document: Any = MessageClasses(OPENAPI_MESSAGES, package="openapi.v2").new("Document")
    document.ParseFromString(response.data)
    assert (response.status, response.headers["Content-Type"]) == (
        200,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
    )
    assert f"{VMS.replace('default', '{namespace}')}/{{name}}" in {p.name for p in document.paths.path}


def test_openapi_v2_refuses_an_accept_it_cannot_produce_with_406(api_server: ApiServer) -> None:
    status, body, _ = api_server.request("GET", "/openapi/v2", headers={"Accept": "text/html"})
    assert (status, body["reason"]) == (406, "NotAcceptable")


# --- apiVersion and kind from the URL ----------------------------------------------------------


def test_python_client_creates_a_namespace_without_apiversion_or_kind(core: client.CoreV1Api) -> None:
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py-no-kind")))
    assert (created.api_version, created.kind, created.metadata.name) == ("v1", "Namespace", "py-no-kind")


def test_python_client_creates_an_event_without_apiversion_or_kind(core: client.CoreV1Api) -> None:
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="py-no-kind.1"),
        involved_object=client.V1ObjectReference(kind="Namespace", name="default"),
        reason="Hello",
        message="no kind",
        type="Normal",
    )
    created = core.create_namespaced_event("default", event)
    assert (created.api_version, created.kind) == ("v1", "Event")


def test_python_client_creates_a_node_without_apiversion_or_kind(core: client.CoreV1Api) -> None:
    created = core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="py-no-kind-node")))
    assert (created.api_version, created.kind) == ("v1", "Node")


def test_python_client_creates_a_controller_revision_without_apiversion_or_kind(
    api_server: ApiServer,
) -> None:
    api_client = config.new_client_from_config(config_file=str(api_server.kubeconfig))
    try:
        revision = client.V1ControllerRevision(
            metadata=client.V1ObjectMeta(name="py-no-kind-rev"), data={"spec": {}}, revision=1
        )
        created = client.AppsV1Api(api_client).create_namespaced_controller_revision("default", revision)
    finally:
        api_client.close()
    assert (created.api_version, created.kind) == ("apps/v1", "ControllerRevision")


def test_custom_object_without_apiversion_or_kind_is_created(custom: client.CustomObjectsApi) -> None:
    body = {
        "metadata": {"name": "py-no-kind"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }
    created = custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", body)
    assert (created["apiVersion"], created["kind"]) == ("kubevirt.io/v1", "VirtualMachine")


def test_python_client_replaces_a_namespace_without_apiversion_or_kind(core: client.CoreV1Api) -> None:
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py-replace")))
    metadata = client.V1ObjectMeta(
        name="py-replace", resource_version=created.metadata.resource_version, labels={"put": "yes"}
    )
    replaced = core.replace_namespace("py-replace", client.V1Namespace(metadata=metadata))
    assert (replaced.kind, replaced.metadata.labels) == ("Namespace", {"put": "yes"})


def test_body_whose_apiversion_disagrees_with_the_url_is_400(api_server: ApiServer) -> None:
    before = api_server.revision()
    body = {"apiVersion": "apps/v1", "kind": "Namespace", "metadata": {"name": "wrong-version"}}
    status, returned, _ = api_server.request("POST", NAMESPACES, body=body)
    assert (status, returned["message"]) == (
        400,
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    )
    assert api_server.revision() == before


def test_python_client_body_of_another_kind_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespace({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "wrong-kind"}})
    assert caught.value.status == 400
    assert "the kind in the data (Node) does not match the expected kind (Namespace)" in str(
        caught.value.body
    )
