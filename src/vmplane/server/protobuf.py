"""Kubernetes' protobuf wire format for the built-in kinds kubectl sends that way.

kubectl's typed clients (``auth can-i``, ``auth whoami``, ``create namespace``) send
``application/vnd.kubernetes.protobuf`` and do not fall back to JSON: the body is the magic
``k8s\\x00`` and a ``runtime.Unknown`` whose ``raw`` holds the object's own message. The messages are
declared here as data (the subset of fields vmplane reads, numbered as in Kubernetes'
``generated.proto``; fields not declared are skipped by the parser), built into descriptors with
``descriptor_pb2`` and decoded with the ``protobuf`` library into the same JSON-shaped dict the
JSON body would give. Another kind is supported by adding its messages to ``MESSAGES`` and its
``apiVersion``/``kind`` to ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = [
    "KINDS",
    "MAGIC",
    "MEDIA_TYPE",
    "MESSAGES",
    "ProtobufError",
    "decode_object",
    "encode_object",
    "is_protobuf",
]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_T = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _BOOL, _MESSAGE = _T.TYPE_STRING, _T.TYPE_BYTES, _T.TYPE_BOOL, _T.TYPE_MESSAGE
_REPEATED = _T.LABEL_REPEATED


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its JSON name, number, and a scalar type or the name of a message in ``MESSAGES``."""

    name: str
    number: int
    type: int | str = _STRING
    repeated: bool = False


_META = "ObjectMeta"

#: Message name -> fields (Kubernetes' numbering). Names are local to this module's proto package.
MESSAGES: dict[str, tuple[Field, ...]] = {
    "TypeMeta": (Field("apiVersion", 1), Field("kind", 2)),
    "Unknown": (
        Field("typeMeta", 1, "TypeMeta"),
        Field("raw", 2, _BYTES),
        Field("contentEncoding", 3),
        Field("contentType", 4),
    ),
    _META: (
        Field("name", 1),
        Field("generateName", 2),
        Field("namespace", 3),
        Field("uid", 5),
        Field("resourceVersion", 6),
    ),
    # authorization.k8s.io/v1
    "ResourceAttributes": (
        Field("namespace", 1),
        Field("verb", 2),
        Field("group", 3),
        Field("version", 4),
        Field("resource", 5),
        Field("subresource", 6),
        Field("name", 7),
    ),
    "NonResourceAttributes": (Field("path", 1), Field("verb", 2)),
    "SelfSubjectAccessReviewSpec": (
        Field("resourceAttributes", 1, "ResourceAttributes"),
        Field("nonResourceAttributes", 2, "NonResourceAttributes"),
    ),
    "SubjectAccessReviewStatus": (
        Field("allowed", 1, _BOOL),
        Field("reason", 2),
        Field("evaluationError", 3),
        Field("denied", 4, _BOOL),
    ),
    "SelfSubjectAccessReview": (
        Field("metadata", 1, _META),
        Field("spec", 2, "SelfSubjectAccessReviewSpec"),
        Field("status", 3, "SubjectAccessReviewStatus"),
    ),
    # authentication.k8s.io/v1
    "UserInfo": (Field("username", 1), Field("uid", 2), Field("groups", 3, repeated=True)),
    "SelfSubjectReviewStatus": (Field("userInfo", 1, "UserInfo"),),
    "SelfSubjectReview": (Field("metadata", 1, _META), Field("status", 2, "SelfSubjectReviewStatus")),
}

#: (apiVersion, kind) -> message in ``MESSAGES``.
KINDS: dict[tuple[str, str], str] = {
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "SelfSubjectReview",
}

_PACKAGE = "vmplane.k8s"


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf object vmplane can read."""


def _file_descriptor(messages: Mapping[str, tuple[Field, ...]]) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="vmplane_k8s.proto", package=_PACKAGE, syntax="proto2")
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for spec in fields:
            field = message.field.add(
                name=spec.name,
                json_name=spec.name,
                number=spec.number,
                label=_REPEATED if spec.repeated else _T.LABEL_OPTIONAL,
            )
            if isinstance(spec.type, str):
                field.type = _MESSAGE
                field.type_name = f".{_PACKAGE}.{spec.type}"
            else:
                field.type = spec.type  # type: ignore[assignment]
    return proto


class _Codec:
    def __init__(self, messages: Mapping[str, tuple[Field, ...]]) -> None:
        pool = descriptor_pool.DescriptorPool()
        pool.Add(_file_descriptor(messages))
        self._classes = {
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in messages
        }

    def new(self, name: str) -> Message:
        return self._classes[name]()


_codec: _Codec | None = None


def _get_codec() -> _Codec:
    global _codec  # built on first use, not at import
    if _codec is None:
        _codec = _Codec(MESSAGES)
    return _codec


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == MEDIA_TYPE


def decode_object(data: bytes) -> dict[str, Any]:
    """The object in a ``k8s\\x00`` + ``runtime.Unknown`` body, as the JSON body would have it."""
    if not data.startswith(MAGIC):
        raise ProtobufError("protobuf body does not start with the Kubernetes magic number")
    codec = _get_codec()
    envelope = codec.new("Unknown")
    try:
        envelope.ParseFromString(data[len(MAGIC) :])
    except DecodeError as err:
        raise ProtobufError(f"malformed protobuf envelope: {err}") from err
    type_meta: Any = getattr(envelope, "typeMeta")  # noqa: B009 - fields are built at run time
    api_version, kind = str(type_meta.apiVersion), str(type_meta.kind)
    message_name = KINDS.get((api_version, kind))
    if message_name is None:
        raise ProtobufError(
            f"no protobuf decoding for {kind or '<no kind>'} in {api_version or '<no version>'}"
        )
    obj = codec.new(message_name)
    try:
        obj.ParseFromString(bytes(getattr(envelope, "raw")))  # noqa: B009
    except DecodeError as err:
        raise ProtobufError(f"malformed protobuf {kind}: {err}") from err
    body: dict[str, Any] = json_format.MessageToDict(obj, preserving_proto_field_name=True)
    return {"apiVersion": api_version, "kind": kind, **body}


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """``obj`` (a JSON-shaped object of a kind in ``KINDS``) in the wire format; used by tests and clients."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    message_name = KINDS.get((api_version, kind))
    if message_name is None:
        raise ProtobufError(f"no protobuf encoding for {kind} in {api_version}")
    codec = _get_codec()
    message = codec.new(message_name)
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    json_format.ParseDict(fields, message)
    envelope = codec.new("Unknown")
    json_format.ParseDict({"typeMeta": {"apiVersion": api_version, "kind": kind}}, envelope)
    setattr(envelope, "raw", message.SerializeToString())  # noqa: B010
    return MAGIC + envelope.SerializeToString()
