"""Issue 8, Deliver 5 (metadata): ObjectMeta admission as kube-apiserver's, for every kind served.

Annotation total size, label key and value syntax, annotation keys, namespace names (DNS-1123
labels) and ``generateName``, with apimachinery's messages, against a real ``vmplane serve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from limits_support import VM_NAMESPACE_PATH, LimitsServer, serving, vm

pytestmark = pytest.mark.integration

LIMIT = 262144


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    with serving(tmp_path_factory.mktemp("metadata")) as running:
        yield running


def _invalid(status: int, body: dict[str, Any], field: str) -> str:
    assert status == 422, body
    assert body["reason"] == "Invalid"
    causes = body["details"]["causes"]
    assert field in [c["field"] for c in causes], causes
    return str(body["message"])


def _namespace(name: str, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **metadata}}


def test_annotations_over_256_kib_are_refused(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "POST", VM_NAMESPACE_PATH, body=vm("big", annotations={"a": "x" * LIMIT})
    )
    message = _invalid(status, body, "metadata.annotations")
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in message
    assert server.request("GET", f"{VM_NAMESPACE_PATH}/big")[0] == 404


def test_annotations_of_exactly_256_kib_are_accepted(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "POST", VM_NAMESPACE_PATH, body=vm("at-limit", annotations={"a": "x" * (LIMIT - 1)})
    )
    assert status == 201, body.get("message")


def test_annotations_split_over_many_keys_count_together(server: LimitsServer) -> None:
    annotations = {f"k{i}": "x" * (LIMIT // 4) for i in range(4)}
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("split", annotations=annotations))
    assert "Too long" in _invalid(status, body, "metadata.annotations")


def test_an_update_past_the_annotation_limit_is_refused(server: LimitsServer) -> None:
    assert server.request("POST", VM_NAMESPACE_PATH, body=vm("grows"))[0] == 201
    status, body, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/grows",
        body={"metadata": {"annotations": {"a": "x" * LIMIT}}},
        content_type="application/merge-patch+json",
    )
    _invalid(status, body, "metadata.annotations")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("bad key", "name part must consist of alphanumeric characters", id="space"),
        pytest.param("-leading", "name part must consist of alphanumeric characters", id="leading-dash"),
        pytest.param("a" * 64, "name part must be no more than 63 characters", id="name-too-long"),
        pytest.param("Example.com/x", "prefix part a lowercase RFC 1123 subdomain", id="uppercase-prefix"),
        pytest.param("/x", "prefix part must be non-empty", id="empty-prefix"),
        pytest.param("example.com/", "name part must be non-empty", id="empty-name"),
        pytest.param("a/b/c", "a qualified name must consist of", id="two-slashes"),
        pytest.param("x" * 254 + "/a", "prefix part must be no more than 253 characters", id="long-prefix"),
    ],
)
def test_invalid_label_keys_are_refused(server: LimitsServer, key: str, expected: str) -> None:
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("labelled", labels={key: "v"}))
    message = _invalid(status, body, "metadata.labels")
    assert expected in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("a b", "a valid label must be an empty string or consist of", id="space"),
        pytest.param("-x", "a valid label must be an empty string or consist of", id="leading-dash"),
        pytest.param("x" * 64, "must be no more than 63 characters", id="too-long"),
        pytest.param("a/b", "a valid label must be an empty string", id="slash"),
    ],
)
def test_invalid_label_values_are_refused(server: LimitsServer, value: str, expected: str) -> None:
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("labelled", labels={"k": value}))
    message = _invalid(status, body, "metadata.labels")
    assert expected in message
    assert "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?" in message or "63" in message


def test_valid_labels_are_accepted(server: LimitsServer) -> None:
    labels = {"kubevirt.io/size": "small", "app": "", "a_b.c-d": "X_y.Z-1", "k" * 63: "v" * 63}
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("good-labels", labels=labels))
    assert status == 201, body.get("message")


def test_invalid_annotation_keys_are_refused(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "POST", VM_NAMESPACE_PATH, body=vm("annotated", annotations={"bad key": "v"})
    )
    assert "name part must consist of" in _invalid(status, body, "metadata.annotations")


def test_namespace_named_a_dot_b_is_refused(server: LimitsServer) -> None:
    status, body, _ = server.request("POST", "/api/v1/namespaces", body=_namespace("a.b"))
    message = _invalid(status, body, "metadata.name")
    assert "a lowercase RFC 1123 label must consist of" in message
    assert server.request("GET", "/api/v1/namespaces/a.b")[0] == 404


def test_namespace_name_longer_than_63_is_refused(server: LimitsServer) -> None:
    status, body, _ = server.request("POST", "/api/v1/namespaces", body=_namespace("n" * 64))
    assert "must be no more than 63 characters" in _invalid(status, body, "metadata.name")


def test_vm_in_namespace_a_dot_b_is_refused(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "POST", "/apis/kubevirt.io/v1/namespaces/a.b/virtualmachines", body=vm("in-dotted")
    )
    assert 400 <= status < 500, body
    assert body["kind"] == "Status"


def test_invalid_generate_name_is_refused_on_generate_name(server: LimitsServer) -> None:
    body_in = vm("")
    body_in["metadata"] = {"generateName": "Bad_"}
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=body_in)
    _invalid(status, body, "metadata.generateName")


def test_long_generate_name_is_truncated_as_kubernetes_does(server: LimitsServer) -> None:
    body_in = vm("")
    body_in["metadata"] = {"generateName": "g" * 100 + "-"}
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=body_in)
    assert status == 201, body.get("message")
    assert len(body["metadata"]["name"]) == 63
    assert body["metadata"]["name"].startswith("g" * 58)


@pytest.mark.parametrize(
    ("path", "obj"),
    [
        pytest.param("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node"}, id="Node"),
        pytest.param("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace"}, id="Namespace"),
        pytest.param(
            "/api/v1/namespaces/default/events",
            {"apiVersion": "v1", "kind": "Event", "involvedObject": {}},
            id="Event",
        ),
        pytest.param(
            "/apis/apps/v1/namespaces/default/controllerrevisions",
            {"apiVersion": "apps/v1", "kind": "ControllerRevision", "revision": 1},
            id="ControllerRevision",
        ),
        pytest.param(
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "spec": {"domain": {"devices": {}}},
            },
            id="VirtualMachineInstance",
        ),
        pytest.param(
            "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts",
            {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "spec": {}},
            id="KubeVirt",
        ),
    ],
)
def test_every_kind_gets_the_metadata_rules(server: LimitsServer, path: str, obj: dict[str, Any]) -> None:
    bad_labels = {**obj, "metadata": {"name": "meta-rules", "labels": {"bad key": "v"}}}
    status, body, _ = server.request("POST", path, body=bad_labels)
    _invalid(status, body, "metadata.labels")
    big = {**obj, "metadata": {"name": "meta-rules", "annotations": {"a": "x" * LIMIT}}}
    status, body, _ = server.request("POST", path, body=big)
    _invalid(status, body, "metadata.annotations")


def test_labels_that_are_not_strings_are_refused(server: LimitsServer) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "typed-labels", "labels": {"a": 1}}}
    status, body, _ = server.request("POST", "/api/v1/nodes", body=node)
    _invalid(status, body, "metadata.labels")


@pytest.mark.parametrize(
    ("references", "field"),
    [
        pytest.param("x", "metadata.ownerReferences", id="not-a-list"),
        pytest.param(
            [{"apiVersion": "v1", "kind": "Node", "name": "n"}],
            "metadata.ownerReferences[0].uid",
            id="no-uid",
        ),
    ],
)
def test_malformed_owner_references_are_refused(server: LimitsServer, references: Any, field: str) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "owned", "ownerReferences": references}}
    status, body, _ = server.request("POST", "/api/v1/nodes", body=node)
    _invalid(status, body, field)
