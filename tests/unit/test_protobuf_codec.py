"""Kubernetes protobuf bodies of the built-in kinds, and ``/openapi/v2`` as protobuf (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from vmplane.apiserver.openapi_protobuf import MEDIA_TYPE as OPENAPI_PROTOBUF
from vmplane.apiserver.openapi_protobuf import MESSAGES as OPENAPI_MESSAGES
from vmplane.apiserver.openapi_protobuf import choose_media_type, encode_document
from vmplane.apiserver.protobuf import MessageClasses, ProtobufError, decode_object, encode_object
from vmplane.apiserver.protobuf_messages import MESSAGES
from vmplane.apiserver.status import ApiError

#: ``kubectl create namespace capture``, as kubectl 1.32.4 sent it here (``-v=9``).
KUBECTL_CREATE_NAMESPACE = bytes.fromhex(
    "6b3873000a0f0a0276311209 4e616d65 73706163 65121f0a 170a0763 61707475"
    "72651200 1a002200 2a003200 38004200 12001a02 0a001a00 2200".replace(" ", "")
)

NAMESPACE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": "demo",
        "creationTimestamp": "2026-12-01T21:00:00Z",
        "labels": {"a": "b"},
        "annotations": {"note": "x"},
        "ownerReferences": [
            {
                "kind": "VirtualMachine",
                "name": "vm",
                "uid": "u1",
                "apiVersion": "kubevirt.io/v1",
                "controller": True,
            }
        ],
        "finalizers": ["example.com/keep"],
    },
    "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Active"},
}
NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node01", "labels": {"kubernetes.io/hostname": "node01"}},
    "spec": {"unschedulable": True, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
    "status": {
        "capacity": {"cpu": "2", "memory": "4012Mi"},
        "allocatable": {"cpu": "1500m", "memory": "3Gi"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": "2026-12-01T21:00:05Z",
                "lastTransitionTime": "2026-12-01T21:00:00Z",
                "reason": "AgentReady",
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "node01"},
        ],
        "nodeInfo": {"kubeletVersion": "v1.32.0", "architecture": "amd64", "operatingSystem": "linux"},
    },
}
EVENT: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "vm.1", "namespace": "default"},
    "involvedObject": {
        "kind": "VirtualMachine",
        "namespace": "default",
        "name": "vm",
        "apiVersion": "kubevirt.io/v1",
    },
    "reason": "Started",
    "message": "started the guest",
    "source": {"component": "virt-handler", "host": "node01"},
    "firstTimestamp": "2026-12-01T21:00:00Z",
    "lastTimestamp": "2026-12-01T21:00:09Z",
    "count": 3,
    "type": "Normal",
    "eventTime": "2026-12-01T21:00:00.250000Z",
}
REVISION: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "ControllerRevision",
    "metadata": {"name": "vm-r1", "namespace": "default"},
    "data": {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}},
    "revision": 7,
}


def test_kubectl_create_namespace_decodes_to_its_json_form() -> None:
    # Go writes every non-pointer field; the zero values are left out as its JSON leaves them out.
    assert decode_object(KUBECTL_CREATE_NAMESPACE) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "capture"},
        "spec": {},
        "status": {},
    }


@pytest.mark.parametrize(
    "obj", [NAMESPACE, NODE, EVENT, REVISION], ids=["namespace", "node", "event", "revision"]
)
def test_built_in_kind_round_trips_through_the_wire_format(obj: dict[str, Any]) -> None:
    assert decode_object(encode_object(obj)) == obj


def test_time_is_an_rfc3339_string_to_the_second_and_micro_time_to_the_microsecond() -> None:
    event = {**EVENT, "firstTimestamp": "2026-12-01T21:00:00.9Z", "eventTime": "2026-12-01T21:00:00.123456Z"}
    decoded = decode_object(encode_object(event))
    assert (decoded["firstTimestamp"], decoded["eventTime"]) == (
        "2026-12-01T21:00:00Z",
        "2026-12-01T21:00:00.123456Z",
    )


def test_quantities_stay_strings() -> None:
    assert decode_object(encode_object(NODE))["status"]["capacity"] == {"cpu": "2", "memory": "4012Mi"}


_CODEC = MessageClasses(MESSAGES, package="test.k8s")


def _wire(api_version: str, kind: str, message: Any) -> bytes:
    envelope: Any = _CODEC.new("Unknown")
    envelope.typeMeta.apiVersion, envelope.typeMeta.kind = api_version, kind
    envelope.raw = message.SerializeToString()
    return b"k8s\x00" + envelope.SerializeToString()


def _revision_with_raw(raw: bytes) -> bytes:
    revision: Any = _CODEC.new("ControllerRevision")
    revision.metadata.name = "r"
    revision.data.raw = raw
    return _wire("apps/v1", "ControllerRevision", revision)


def test_raw_extension_that_is_not_json_is_refused_naming_the_field() -> None:
    with pytest.raises(ProtobufError, match=r"^data: raw extension is not JSON"):
        decode_object(_revision_with_raw(b"\x00not json"))


def test_raw_extension_nested_too_deep_is_a_400() -> None:
    with pytest.raises(ApiError) as caught:
        decode_object(_revision_with_raw(b"[" * 5000 + b"]" * 5000))
    assert (caught.value.code, caught.value.status["reason"]) == (400, "BadRequest")


def test_string_that_is_not_utf8_is_refused_naming_the_field() -> None:
    body = bytes.fromhex("6b3873000a0f0a0276311209") + b"Namespace" + bytes.fromhex("12060a040a02fffe")
    with pytest.raises(ProtobufError, match=r"^metadata\.name: invalid UTF-8"):
        decode_object(body)


def test_time_out_of_range_is_refused_naming_the_field() -> None:
    namespace: Any = _CODEC.new("Namespace")
    namespace.metadata.creationTimestamp.seconds = 2**62
    with pytest.raises(ProtobufError, match=r"^metadata\.creationTimestamp: not a time"):
        decode_object(_wire("v1", "Namespace", namespace))


def test_encoding_a_value_of_the_wrong_type_names_the_field() -> None:
    with pytest.raises(ProtobufError, match=r"^metadata\.labels\[a\]: must be of type str$"):
        encode_object({**NAMESPACE, "metadata": {"name": "x", "labels": {"a": 1}}})


def test_kind_without_a_message_is_refused_by_name() -> None:
    with pytest.raises(ProtobufError, match="no protobuf encoding for Deployment in apps/v1"):
        encode_object({"apiVersion": "apps/v1", "kind": "Deployment"})


def test_delete_options_decode() -> None:
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u1"},
        "dryRun": ["All"],
    }
    assert decode_object(encode_object(options)) == options


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", OPENAPI_PROTOBUF),
        ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", OPENAPI_PROTOBUF),
        ("application/json, */*", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
        ("text/html", None),
        ("application/vnd.kubernetes.protobuf", None),
    ],
    ids=["client-go", "kube-openapi-name", "json", "any", "none", "html", "k8s-protobuf"],
)
def test_openapi_v2_media_type_follows_accept(accept: str | None, chosen: str | None) -> None:
    assert choose_media_type(accept) == chosen


def test_openapi_v2_protobuf_document_holds_paths_and_their_kinds() -> None:
    gvk = {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": {
            "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}": {
                "patch": {"operationId": "patchVirtualMachine", "x-kubernetes-group-version-kind": gvk}
            }
        },
    }
    parsed: Any = MessageClasses(OPENAPI_MESSAGES, package="openapi.v2").new("Document")
    parsed.ParseFromString(encode_document(document))
    (path,) = parsed.paths.path
    (extension,) = path.value.patch.vendor_extension
    assert (parsed.swagger, parsed.info.version, path.value.patch.operation_id) == (
        "2.0",
        "v1.32.0",
        "patchVirtualMachine",
    )
    assert (extension.name, yaml.safe_load(extension.value.yaml)) == ("x-kubernetes-group-version-kind", gvk)
