"""Request bodies and write options, checked before anything reaches admission or the store (pure).

Every check here answers with the ``Status`` kube-apiserver gives: a media type the kind cannot be
read in is 415, malformed bodies and objects that do not belong to the URL are 400, names that are not
DNS subdomains are 422.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from vmplane.api.errors import CauseType, FieldCause
from vmplane.apiserver import decoders, protobuf
from vmplane.apiserver import status as st
from vmplane.apiserver.registry import FieldValidation, ResourceType
from vmplane.apiserver.routing import Target
from vmplane.store.base import JsonObject

__all__ = [
    "JSON",
    "YAML",
    "WriteOptions",
    "check_object",
    "decode_body",
    "decode_object",
    "duplicate_warnings",
    "media_types",
    "optional_json",
    "parse_write_options",
]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
JSON, YAML = "application/json", "application/yaml"
# aiohttp's content_type when the request has none; kube-apiserver reads such a body as JSON.
_NO_CONTENT_TYPE = ("", "application/octet-stream")
SERVER_OWNED = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "managedFields",
)


@dataclass(frozen=True, slots=True)
class WriteOptions:
    dry_run: bool
    field_validation: FieldValidation
    field_manager: str
    force: bool


def parse_write_options(query: Mapping[str, str], dry_run_values: list[str]) -> WriteOptions:
    """``dryRun``, ``fieldValidation``, ``fieldManager``, ``force`` query parameters."""
    for value in dry_run_values:
        if value != "All":
            raise st.bad_request(
                f'Invalid dry run value: Unsupported value: "{value}": supported values: "All"'
            )
    validation = query.get("fieldValidation") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise st.bad_request(
            f'fieldValidation: Unsupported value: "{validation}": '
            'supported values: "Ignore", "Strict", "Warn"'
        )
    return WriteOptions(
        dry_run=bool(dry_run_values),
        field_validation=cast(FieldValidation, validation),
        field_manager=query.get("fieldManager", ""),
        force=query.get("force", "") in ("1", "t", "T", "true", "TRUE", "True"),
    )


def decode_object(body: bytes, content_type: str) -> JsonObject:
    """A JSON or YAML object body; anything else is 400 BadRequest (duplicate keys ignored)."""
    return decode_body(body, content_type, "Ignore")[0]


def optional_json(body: bytes) -> Any:
    """A subresource request's optional JSON body (``{"dryRun": [...]}`` and the like): None when
    empty, 400 when malformed."""
    if not body.strip():
        return None
    try:
        return decoders.load_json(body)
    except decoders.BodyError as err:
        raise st.bad_request(f"malformed JSON body: {err}") from err


def media_types(*, protobuf_kind: bool) -> list[str]:
    """The media types a body may have: protobuf only for the built-in kinds it is declared for."""
    return [JSON, YAML, protobuf.MEDIA_TYPE] if protobuf_kind else [JSON, YAML]


def decode_body(
    body: bytes, content_type: str, field_validation: FieldValidation, *, protobuf_kind: bool = False
) -> tuple[JsonObject, list[str]]:
    """A JSON, YAML or (for ``protobuf_kind``) protobuf object body and its warnings.

    Another media type is 415 UnsupportedMediaType listing those accepted, as kube-apiserver's;
    a body that does not parse is 400 BadRequest. Duplicate keys are refused under ``Strict`` and
    warned about under ``Warn``, as kube-apiserver does; past :data:`decoders.MAX_DEPTH` levels the
    body is refused before it is used.
    """
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in (*_NO_CONTENT_TYPE, *media_types(protobuf_kind=protobuf_kind)):
        raise st.unsupported_media_type(media_types(protobuf_kind=protobuf_kind))
    if not body.strip():
        raise st.bad_request("the body of the request was empty")
    if media_type == protobuf.MEDIA_TYPE:
        try:
            return protobuf.decode_object(body), []
        except protobuf.ProtobufError as err:
            raise st.bad_request(f"error decoding protobuf: {err}") from err
    kind = "YAML" if media_type == YAML else "JSON"
    duplicates: list[str] | None = None if field_validation == "Ignore" else []
    try:
        if kind == "YAML":
            obj: Any = decoders.load_yaml(body, duplicates=duplicates)
        else:
            obj = decoders.load_json(body, duplicates=duplicates)
    except decoders.BodyError as err:
        raise st.bad_request(f"error decoding {kind}: {err}") from err
    if not isinstance(obj, dict):
        raise st.bad_request("the body of the request must be a JSON object")
    if not isinstance(obj.get("metadata", {}), dict):
        raise st.bad_request("metadata: must be an object")
    return obj, duplicate_warnings(duplicates or [], field_validation)


def duplicate_warnings(duplicates: list[str], field_validation: FieldValidation) -> list[str]:
    """Kubernetes' ``duplicate field "a.b"``: an error under ``Strict``, warnings under ``Warn``."""
    if not duplicates:
        return []
    messages = [f'duplicate field "{path}"' for path in duplicates]
    if field_validation == "Strict":
        causes = [
            {"reason": "FieldValueDuplicate", "message": message, "field": path}
            for message, path in zip(messages, duplicates, strict=True)
        ]
        raise st.ApiError(
            code=400,
            reason="BadRequest",
            message="strict decoding error: " + ", ".join(messages),
            details={"causes": causes},
        )
    return messages if field_validation == "Warn" else []


def check_object(obj: JsonObject, target: Target, *, require_name: bool = True) -> JsonObject:
    """Check that ``obj`` belongs to the URL and return it with the URL's apiVersion, kind and namespace
    filled in where the body leaves them out (as the Python client's bodies do)."""
    resource_type = target.resource_type
    api_version = obj.get("apiVersion") or resource_type.api_version
    kind = obj.get("kind") or resource_type.kind
    if api_version != resource_type.api_version:
        raise st.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version "
            f"({resource_type.api_version})"
        )
    if kind != resource_type.kind:
        raise st.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({resource_type.kind})"
        )
    metadata: JsonObject = dict(obj.get("metadata") or {})
    if resource_type.namespaced:
        body_namespace = metadata.get("namespace")
        if body_namespace and body_namespace != target.namespace:
            raise st.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = target.namespace
    else:
        metadata.pop("namespace", None)
    name = metadata.get("name")
    if target.name is not None and name != target.name:
        raise st.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({target.name})"
        )
    _check_name(resource_type, metadata, require_name=require_name)
    return {**obj, "apiVersion": api_version, "kind": kind, "metadata": metadata}


def _check_name(resource_type: ResourceType, metadata: JsonObject, *, require_name: bool) -> None:
    name = metadata.get("name")
    if not name:
        if require_name:
            cause = FieldCause(
                "metadata.name",
                "Required value: name or generateName is required",
                CauseType.FIELD_VALUE_REQUIRED,
            )
            raise st.invalid(resource_type, "", [cause])
        return
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        cause = FieldCause("metadata.name", f'Invalid value: "{name}": {_DNS_MESSAGE}')
        raise st.invalid(resource_type, str(name), [cause])
