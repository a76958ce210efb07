"""``/openapi/v2`` as protobuf: the gnostic ``openapi.v2.Document`` kubectl asks for.

For a kind it finds in no OpenAPI v3 document, kubectl 1.32 reads ``/openapi/v2`` with ``Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and fails on anything that does not
parse as that message; when the document parses and has no such kind, ``kubectl apply`` goes on to
report ``no matches for kind``. The encoding holds the document's header and its paths (operation
ids, consumed media types, and the ``x-kubernetes-action`` / ``x-kubernetes-group-version-kind``
extensions). Left out: the definitions, because kubectl reads the schemas of the kinds vmplane
serves from OpenAPI v3; and the parameters, because when the Namespace PATCH lists
``fieldValidation`` kubectl takes an unserved kind for a CustomResourceDefinition, lists CRDs (which
vmplane does not serve) and fails with ``failed to check CRD`` instead. Field numbers are those of
gnostic-models ``openapiv2/OpenAPIv2.proto`` (a84a29e).
"""

from __future__ import annotations

from typing import Any

import yaml

from vmplane.apiserver.discovery import accept_entries
from vmplane.apiserver.protobuf import MessageClasses
from vmplane.apiserver.protobuf_messages import Field
from vmplane.store.base import JsonObject

__all__ = ["JSON", "MEDIA_TYPE", "MESSAGES", "REQUESTED_MEDIA_TYPES", "choose_media_type", "encode_document"]

#: The protobuf form's ``Content-Type``, as kube-openapi writes it: the ``@`` of the name clients ask
#: for is not a legal media-type character, and client-go refuses a response labelled with it.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
#: The names ``Accept`` may give the protobuf form by (client-go asks with the ``@`` one).
REQUESTED_MEDIA_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", MEDIA_TYPE)
JSON = "application/json"
_OPERATION = "Operation"
_NAMED_ANY = "NamedAny"
_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}

MESSAGES: dict[str, tuple[Field, ...]] = {
    "Document": (
        Field("swagger", 1),
        Field("info", 2, "Info"),
        Field("paths", 8, "Paths"),
    ),
    "Info": (Field("title", 1), Field("version", 2)),
    "Paths": (Field("path", 2, "NamedPathItem", repeated=True),),
    "NamedPathItem": (Field("name", 1), Field("value", 2, "PathItem")),
    "PathItem": (*(Field(method, number, _OPERATION) for method, number in _METHODS.items()),),
    _OPERATION: (
        Field("operation_id", 5),
        Field("consumes", 7, repeated=True),
        Field("vendor_extension", 13, _NAMED_ANY, repeated=True),
    ),
    _NAMED_ANY: (Field("name", 1), Field("value", 2, "Any")),
    "Any": (Field("yaml", 2),),
}


def _operation(target: Any, operation: JsonObject) -> None:
    target.operation_id = str(operation.get("operationId", ""))
    target.consumes.extend(operation.get("consumes", []))
    for name, value in operation.items():
        if name.startswith("x-"):
            extension = target.vendor_extension.add()
            extension.name = name
            extension.value.yaml = yaml.safe_dump(value, default_flow_style=False)


def encode_document(document: JsonObject) -> bytes:
    """The OpenAPI v2 ``document`` (vmplane's JSON form) as a gnostic ``Document`` (pure)."""
    classes = MessageClasses(MESSAGES, package="openapi.v2")
    message: Any = classes.new("Document")
    message.swagger = str(document.get("swagger", "2.0"))
    message.info.title = str(document.get("info", {}).get("title", ""))
    message.info.version = str(document.get("info", {}).get("version", ""))
    for path, item in document.get("paths", {}).items():
        named = message.paths.path.add()
        named.name = path
        for method in _METHODS:
            if method in item:
                _operation(getattr(named.value, method), item[method])
    return bytes(message.SerializeToString())


def choose_media_type(accept: str | None) -> str | None:
    """The form of ``/openapi/v2`` the client asked for first (JSON without ``Accept``), None for 406."""
    if not (accept or "").strip():
        return JSON
    for media_type, _params in accept_entries(accept):
        if media_type in REQUESTED_MEDIA_TYPES:
            return MEDIA_TYPE
        if media_type in (JSON, "application/*", "*/*"):
            return JSON
    return None
