"""OpenAPI v2 and v3 documents generated from the registry's JSON schemas.

kubectl reads ``/openapi/v3`` for ``explain`` and to decide whether the server validates fields:
a PATCH operation carrying ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` query
parameter makes it skip client-side validation and send ``fieldValidation=Strict``. Schemas with
pydantic's ``$defs`` are hoisted into the document's shared definitions.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from vmplane.apiserver.openapi_protobuf import encode_document
from vmplane.apiserver.openapi_schema import QUANTITY, kubernetes_schema, quantity_schema
from vmplane.apiserver.openapi_subresources import GROUP_VERSION_PATH, subresource_paths
from vmplane.apiserver.registry import Registry, ResourceType
from vmplane.store.base import JsonObject

__all__ = ["OpenApiDocs", "schema_name"]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_OBJECT_META_SCHEMA: JsonObject = {
    "description": "ObjectMeta is metadata that all persisted resources must have.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "generateName": {"type": "string", "description": "Prefix for a server-generated name."},
        "namespace": {"type": "string", "description": "Namespace defines the space of the name."},
        "uid": {"type": "string", "description": "UID is the unique in time and space value."},
        "resourceVersion": {"type": "string", "description": "An opaque value for optimistic concurrency."},
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "Generation of the desired state.",
        },
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "Creation time."},
        "deletionTimestamp": {"type": "string", "format": "date-time", "description": "Deletion time."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels."},
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Annotations.",
        },
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Finalizers."},
    },
}
_QUERY = ("dryRun", "fieldManager", "fieldValidation", "pretty")
# As kube-apiserver's document: ``watch`` is left out (a stream is its own operation upstream).
_LIST_QUERY = ("labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "timeoutSeconds")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")


def schema_name(resource_type: ResourceType) -> str:
    """Kubernetes' definition name: ``io.kubevirt.v1.VirtualMachine``, ``io.k8s.api.core.v1.Event``."""
    if not resource_type.group:
        prefix = "io.k8s.api.core"
    elif "." not in resource_type.group:
        prefix = f"io.k8s.api.{resource_type.group}"
    else:
        prefix = ".".join(reversed(resource_type.group.split(".")))
    return f"{prefix}.{resource_type.version}.{resource_type.kind}"


def _rewrite_refs(node: Any, old_prefix: str, new_prefix: str) -> Any:
    if isinstance(node, dict):
        return {
            k: (new_prefix + v[len(old_prefix) :])
            if k == "$ref" and isinstance(v, str) and v.startswith(old_prefix)
            else _rewrite_refs(v, old_prefix, new_prefix)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, old_prefix, new_prefix) for v in node]
    return node


def _kind_schemas(resource_type: ResourceType, ref_root: str, *, v3: bool) -> dict[str, JsonObject]:
    """The kind's schema plus its hoisted ``$defs``, refs pointing into ``ref_root``."""
    name = schema_name(resource_type)
    schema = copy.deepcopy(resource_type.schema) or {"type": "object"}
    defs = schema.pop("$defs", None) or schema.pop("definitions", None) or {}
    def_prefix = f"{name}."
    models = {def_prefix + n: str(d.get("description", "")) for n, d in defs.items() if d.get("description")}
    models[OBJECT_META] = str(_OBJECT_META_SCHEMA["description"])
    schema = _rewrite_refs(schema, "#/$defs/", ref_root + def_prefix)
    properties = schema.setdefault("properties", {})
    properties["metadata"] = {"$ref": ref_root + OBJECT_META, "description": "Standard object's metadata."}
    schema = kubernetes_schema(resource_type.kind, schema, v3=v3, ref_root=ref_root, models=models)
    schema["x-kubernetes-group-version-kind"] = [
        {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}
    ]
    schemas = {name: schema}
    for def_name, definition in defs.items():
        rewritten = _rewrite_refs(definition, "#/$defs/", ref_root + def_prefix)
        schemas[def_prefix + def_name] = kubernetes_schema(
            def_name, rewritten, v3=v3, ref_root=ref_root, models=models
        )
    list_schema: JsonObject = {
        "type": "object",
        "description": f"A list of {resource_type.kind}.",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": ref_root + name}},
            "metadata": {"type": "object"},
        },
        "x-kubernetes-group-version-kind": [
            {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.list_kind}
        ],
    }
    schemas[name + "List"] = list_schema
    return schemas


def _paths_of(resource_type: ResourceType) -> tuple[str, str]:
    root = f"/apis/{resource_type.group}/{resource_type.version}" if resource_type.group else "/api/v1"
    scope = f"{root}/namespaces/{{namespace}}" if resource_type.namespaced else root
    return f"{scope}/{resource_type.plural}", f"{scope}/{resource_type.plural}/{{name}}"


def _operations(resource_type: ResourceType, ref: str, *, v3: bool) -> dict[str, JsonObject]:
    """Path items of one kind: collection, item, and status subresource."""
    gvk = {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}

    def param(name: str, where: str) -> JsonObject:
        p: JsonObject = {"name": name, "in": where, "required": where == "path", "uniqueItems": True}
        if v3:
            p["schema"] = {"type": "string"}
        else:
            p["type"] = "string"
        return p

    def op(action: str, verb: str, *, body: bool = False) -> JsonObject:
        queries = _QUERY if body else _LIST_QUERY if action == "list" else ()
        operation: JsonObject = {
            "operationId": f"{verb}{resource_type.kind}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [param(q, "query") for q in queries],
        }
        if v3:
            content = {"application/json": {"schema": {"$ref": ref}}}
            operation["responses"] = {"200": {"description": "OK", "content": content}}
            if body:
                types = PATCH_TYPES if action == "patch" else ("*/*",)
                operation["requestBody"] = {
                    "content": {t: {"schema": {"$ref": ref}} for t in types},
                    "required": True,
                }
        else:
            operation["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
            if body:
                operation["parameters"].append(
                    {"name": "body", "in": "body", "required": True, "schema": {"$ref": ref}}
                )
            if action == "patch":
                operation["consumes"] = list(PATCH_TYPES)
        return operation

    collection, item = _paths_of(resource_type)
    scope_params = [param("namespace", "path")] if resource_type.namespaced else []
    items: dict[str, JsonObject] = {
        collection: {
            "get": op("list", "list"),
            "post": op("post", "create", body=True),
            "delete": op("deletecollection", "deleteCollection"),
            "parameters": scope_params,
        },
        item: {
            "get": op("get", "read"),
            "put": op("put", "replace", body=True),
            "patch": op("patch", "patch", body=True),
            "delete": op("delete", "delete"),
            "parameters": [param("name", "path"), *scope_params],
        },
    }
    if resource_type.has_status_subresource:
        items[item + "/status"] = {
            "get": op("get", "readStatus"),
            "put": op("put", "replaceStatus", body=True),
            "patch": op("patch", "patchStatus", body=True),
            "parameters": [param("name", "path"), *scope_params],
        }
    return items


def _document(resource_types: list[ResourceType], *, v3: bool, with_subresources: bool = False) -> JsonObject:
    ref_root = "#/components/schemas/" if v3 else "#/definitions/"
    schemas: dict[str, JsonObject] = {
        OBJECT_META: copy.deepcopy(_OBJECT_META_SCHEMA),
        QUANTITY: quantity_schema(v3=v3),
    }
    paths: dict[str, JsonObject] = {}
    for resource_type in resource_types:
        schemas.update(_kind_schemas(resource_type, ref_root, v3=v3))
        paths.update(_operations(resource_type, ref_root + schema_name(resource_type), v3=v3))
    if with_subresources:
        paths.update(
            subresource_paths(v3=v3, vm_ref=ref_root + _VM_SCHEMA if _VM_SCHEMA in schemas else None)
        )
    info = {"title": "Kubernetes", "version": "v1.32.0"}
    if v3:
        return {"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}}
    return {"swagger": "2.0", "info": info, "paths": paths, "definitions": schemas}


_VM_SCHEMA = "io.kubevirt.v1.VirtualMachine"


def _serialise(doc: JsonObject) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class OpenApiDocs:
    """Every OpenAPI document of a registry, serialised once (the registry does not change at run time)."""

    def __init__(self, registry: Registry) -> None:
        v2 = _document(list(registry), v3=False, with_subresources=True)
        self.v2 = _serialise(v2)
        self.v2_protobuf = encode_document(v2)
        self.v3_by_path: dict[str, bytes] = {}
        index: dict[str, JsonObject] = {}
        group_versions = [("", "v1")] + [(g, v) for g in registry.groups() for v in registry.versions(g)]
        for group, version in group_versions:
            path = f"apis/{group}/{version}" if group else f"api/{version}"
            body = _serialise(_document(registry.in_group_version(group, version), v3=True))
            self.v3_by_path[path] = body
            digest = hashlib.sha512(body).hexdigest()[:64].upper()
            index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        # KubeVirt's subresources group has a document of its own, with paths and no kinds.
        body = _serialise(_document([], v3=True, with_subresources=True))
        self.v3_by_path[GROUP_VERSION_PATH] = body
        digest = hashlib.sha512(body).hexdigest()[:64].upper()
        index[GROUP_VERSION_PATH] = {"serverRelativeURL": f"/openapi/v3/{GROUP_VERSION_PATH}?hash={digest}"}
        self.v3_index = _serialise({"paths": index})
