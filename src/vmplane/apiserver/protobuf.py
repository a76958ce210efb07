"""Kubernetes' protobuf wire format for the built-in kinds vmplane serves.

kubectl's typed clients (``create namespace``, ``auth can-i``, ``auth whoami``) and client-go's
typed clients send ``application/vnd.kubernetes.protobuf`` and do not fall back to JSON: the body
is the magic ``k8s\\x00`` and a ``runtime.Unknown`` whose ``raw`` holds the object's own message.
The messages are declared as data in :mod:`vmplane.apiserver.protobuf_messages`, built into
descriptors with ``descriptor_pb2`` and parsed by the ``protobuf`` library; the walk from a
message to the JSON-shaped dict a JSON body would give is written here because Kubernetes' JSON
form differs from protobuf's own (``Time`` is an RFC 3339 string, a ``Quantity`` its string, a
``RawExtension`` the object it holds, and Go omits zero values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from vmplane.api.timestamps import micro_timestamp, timestamp
from vmplane.apiserver import decoders
from vmplane.apiserver.protobuf_messages import KINDS, MESSAGES, SPECIAL, Field

__all__ = [
    "KINDS",
    "MAGIC",
    "MEDIA_TYPE",
    "MessageClasses",
    "ProtobufError",
    "decode_object",
    "encode_object",
    "is_protobuf",
    "serves",
]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_T = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "vmplane.k8s"
_ZERO: tuple[object, ...] = ("", 0, False, b"")


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf object vmplane can read (or a dict it cannot write)."""


def _entry_name(field: Field) -> str:
    return field.name[0].upper() + field.name[1:] + "Entry"


def _set_type(proto: descriptor_pb2.FieldDescriptorProto, type_: int | str, package: str) -> None:
    if isinstance(type_, str):
        proto.type = _T.TYPE_MESSAGE
        proto.type_name = f".{package}.{type_}"
    else:
        proto.type = type_  # type: ignore[assignment]


def _file_descriptor(
    messages: Mapping[str, tuple[Field, ...]], package: str
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for spec in fields:
            repeated = spec.repeated or spec.map_of is not None
            field = message.field.add(
                name=spec.name,
                json_name=spec.name,
                number=spec.number,
                label=_T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL,
            )
            if spec.map_of is None:
                _set_type(field, spec.type, package)
                continue
            entry = message.nested_type.add(name=_entry_name(spec))
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_T.TYPE_STRING, label=_T.LABEL_OPTIONAL)
            _set_type(entry.field.add(name="value", number=2, label=_T.LABEL_OPTIONAL), spec.map_of, package)
            field.type = _T.TYPE_MESSAGE
            field.type_name = f".{package}.{message_name}.{_entry_name(spec)}"
    return proto


class MessageClasses:
    """Message classes built from a table of ``Field`` declarations, in their own descriptor pool."""

    def __init__(self, messages: Mapping[str, tuple[Field, ...]], *, package: str) -> None:
        pool = descriptor_pool.DescriptorPool()
        pool.Add(_file_descriptor(messages, package))
        self._classes = {
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in messages
        }

    def new(self, name: str) -> Message:
        return self._classes[name]()


_codec: MessageClasses | None = None


def _get_codec() -> MessageClasses:
    global _codec  # built on first use, not at import
    if _codec is None:
        _codec = MessageClasses(MESSAGES, package=_PACKAGE)
    return _codec


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == MEDIA_TYPE


def serves(api_version: str, kind: str) -> bool:
    """Whether a protobuf body of this kind can be read."""
    return (api_version, kind) in KINDS


# --- message -> JSON ---------------------------------------------------------------------------


def _time_to_json(message: Any, path: str, *, micro: bool) -> str | None:
    seconds, nanos = int(message.seconds), int(message.nanos)
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time marshals as an empty message
    try:
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    except (OverflowError, OSError, ValueError) as err:
        raise ProtobufError(f"{path}: not a time: {seconds}s {nanos}ns") from err
    return micro_timestamp(moment) if micro else timestamp(moment)


def _special_to_json(type_name: str, message: Any, path: str) -> Any:
    if type_name in ("Time", "MicroTime"):
        return _time_to_json(message, path, micro=type_name == "MicroTime")
    if type_name == "Quantity":
        return str(message.string)
    raw = bytes(message.raw)
    if not raw:
        return None
    try:
        return decoders.load_json(raw, what=path)  # depth-limited like any JSON body
    except decoders.BodyError as err:
        raise ProtobufError(f"{path}: raw extension is not JSON: {err}") from err


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):  # proto2 hands back bytes for a string that is not UTF-8
        raise ProtobufError(f"{path}: invalid UTF-8 in a string")
    return value


def _value_to_json(type_: int | str, value: Any, path: str) -> Any:
    if not isinstance(type_, str):
        if type_ == _T.TYPE_STRING:
            return _text(value, path)
        return int(value) if type_ in (_T.TYPE_INT32, _T.TYPE_INT64) else value
    if type_ in SPECIAL:
        return _special_to_json(type_, value, path)
    return _message_to_json(type_, value, path)


def _message_to_json(name: str, message: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in MESSAGES[name]:
        where = f"{path}.{field.name}" if path else field.name
        value = getattr(message, field.name)
        if field.map_of is not None:
            if value:
                out[field.name] = {
                    _text(k, where): _value_to_json(field.map_of, v, f"{where}[{k}]")
                    for k, v in value.items()
                }
        elif field.repeated:
            if value:
                out[field.name] = [_value_to_json(field.type, v, where) for v in value]
        elif isinstance(field.type, str):
            if message.HasField(field.name):
                converted = _value_to_json(field.type, value, where)
                if converted is not None:
                    out[field.name] = converted
        elif message.HasField(field.name) and value not in _ZERO:
            out[field.name] = _value_to_json(field.type, value, where)
    return out


def decode_object(data: bytes) -> dict[str, Any]:
    """The object in a ``k8s\\x00`` + ``runtime.Unknown`` body, as the JSON body would have it.

    Zero values are left out, as Go's ``omitempty`` leaves them out of JSON.
    """
    if not data.startswith(MAGIC):
        raise ProtobufError("protobuf body does not start with the Kubernetes magic number")
    codec = _get_codec()
    envelope: Any = codec.new("Unknown")
    try:
        envelope.ParseFromString(data[len(MAGIC) :])
    except DecodeError as err:
        raise ProtobufError(f"malformed protobuf envelope: {err}") from err
    api_version = _text(envelope.typeMeta.apiVersion, "apiVersion")
    kind = _text(envelope.typeMeta.kind, "kind")
    message_name = KINDS.get((api_version, kind))
    if message_name is None:
        raise ProtobufError(
            f"no protobuf decoding for {kind or '<no kind>'} in {api_version or '<no version>'}"
        )
    obj = codec.new(message_name)
    try:
        obj.ParseFromString(bytes(envelope.raw))
    except DecodeError as err:
        raise ProtobufError(f"malformed protobuf {kind}: {err}") from err
    return {"apiVersion": api_version, "kind": kind, **_message_to_json(message_name, obj)}


# --- JSON -> message ---------------------------------------------------------------------------


def _parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise ProtobufError(f"{path}: must be an RFC 3339 time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise ProtobufError(f"{path}: {err}") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _special_from_json(type_name: str, value: Any, target: Any, path: str) -> None:
    if type_name in ("Time", "MicroTime"):
        moment = _parse_time(value, path)
        target.seconds = int(moment.timestamp() // 1)
        target.nanos = moment.microsecond * 1000
    elif type_name == "Quantity":
        target.string = str(value)
    else:
        target.raw = json.dumps(value, separators=(",", ":")).encode()


def _check_scalar(type_: int, value: Any, path: str) -> Any:
    expected: type = str
    if type_ in (_T.TYPE_INT32, _T.TYPE_INT64):
        expected = int
    elif type_ == _T.TYPE_BOOL:
        expected = bool
    elif type_ == _T.TYPE_BYTES:
        expected = bytes
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ProtobufError(f"{path}: must be of type {expected.__name__}")
    return value


def _fill(type_: str, value: Any, target: Any, path: str) -> None:
    if type_ in SPECIAL:
        _special_from_json(type_, value, target, path)
    else:
        _message_from_json(type_, value, target, path)


def _message_from_json(name: str, obj: Any, target: Any, path: str = "") -> None:
    if not isinstance(obj, Mapping):
        raise ProtobufError(f"{path or name}: must be an object")
    for field in MESSAGES[name]:
        value = obj.get(field.name)
        if value is None:
            continue
        where = f"{path}.{field.name}" if path else field.name
        container = getattr(target, field.name)
        if field.map_of is not None:
            if not isinstance(value, Mapping):
                raise ProtobufError(f"{where}: must be an object")
            for key, item in value.items():
                if isinstance(field.map_of, str):
                    _fill(field.map_of, item, container[key], f"{where}[{key}]")
                else:
                    container[key] = _check_scalar(field.map_of, item, f"{where}[{key}]")
        elif field.repeated:
            if not isinstance(value, list):
                raise ProtobufError(f"{where}: must be a list")
            for item in value:
                if isinstance(field.type, str):
                    _fill(field.type, item, container.add(), where)
                else:
                    container.append(_check_scalar(field.type, item, where))
        elif isinstance(field.type, str):
            _fill(field.type, value, container, where)
            container.SetInParent()  # an empty object is still there, as Go writes it
        else:
            setattr(target, field.name, _check_scalar(field.type, value, where))


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """``obj`` (a JSON-shaped object of a kind in ``KINDS``) in the wire format.

    Keys no message declares are left out, as the parser skips undeclared fields.
    """
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    message_name = KINDS.get((api_version, kind))
    if message_name is None:
        raise ProtobufError(f"no protobuf encoding for {kind} in {api_version}")
    codec = _get_codec()
    message = codec.new(message_name)
    _message_from_json(message_name, obj, message)
    envelope: Any = codec.new("Unknown")
    envelope.typeMeta.apiVersion = api_version
    envelope.typeMeta.kind = kind
    envelope.raw = message.SerializeToString()
    return MAGIC + bytes(envelope.SerializeToString())
