"""The OpenAPI documents read as Kubernetes publishes them, so ``kubectl explain`` can walk them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.apiserver.openapi import OpenApiDocs
from vmplane.apiserver.openapi_schema import kubernetes_schema
from vmplane.apiserver.typed_kinds import typed_registry
from vmplane.store.base import JsonObject


class _NoCluster:
    def configuration(self) -> KubeVirtConfiguration:
        return KubeVirtConfiguration()

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return None


DOCS = OpenApiDocs(typed_registry(_NoCluster()))
V3 = json.loads(DOCS.v3_by_path["apis/kubevirt.io/v1"])["components"]["schemas"]
V2 = json.loads(DOCS.v2)["definitions"]


def _kubevirt_definitions(schemas: dict[str, Any]) -> Iterator[tuple[str, JsonObject]]:
    return ((name, s) for name, s in schemas.items() if name.startswith("io.kubevirt.v1."))


def _nodes(node: Any) -> Iterator[JsonObject]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


@pytest.mark.parametrize("schemas", [V3, V2], ids=["v3", "v2"])
def test_every_field_of_every_kubevirt_definition_is_described(schemas: dict[str, Any]) -> None:
    undescribed = [
        f"{name}.{field}"
        for name, schema in _kubevirt_definitions(schemas)
        if not name.endswith("List")
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("schemas", [V3, V2], ids=["v3", "v2"])
def test_no_schema_uses_pydantic_null_unions_titles_or_const(schemas: dict[str, Any]) -> None:
    for node in _nodes(schemas):
        assert {"type": "null"} not in node.get("anyOf", [])
        assert not isinstance(node.get("title"), str)
        assert "const" not in node


def test_a_field_referring_to_a_model_is_an_allof_ref_in_v3_and_a_bare_ref_in_v2() -> None:
    cpu_v3 = V3["io.kubevirt.v1.VirtualMachine.DomainSpec"]["properties"]["cpu"]
    cpu_v2 = V2["io.kubevirt.v1.VirtualMachine.DomainSpec"]["properties"]["cpu"]
    assert cpu_v3["allOf"] == [{"$ref": "#/components/schemas/io.kubevirt.v1.VirtualMachine.CPU"}]
    assert cpu_v2["$ref"] == "#/definitions/io.kubevirt.v1.VirtualMachine.CPU"


def test_upstream_descriptions_are_used_where_upstream_has_one() -> None:
    sockets = V3["io.kubevirt.v1.VirtualMachine.CPU"]["properties"]["sockets"]
    assert sockets["type"] == "integer"
    assert sockets["description"].startswith("Sockets specifies the number of sockets inside the vmi.")


def test_an_optional_scalar_keeps_its_type_and_constraints() -> None:
    schema = {
        "properties": {"n": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}], "default": None}}
    }
    out = kubernetes_schema("Unknown", schema, v3=True, ref_root="#/d/", models={})
    assert out["properties"]["n"] == {"type": "integer", "minimum": 0}


def test_a_single_value_literal_becomes_an_enum() -> None:
    schema = {"properties": {"kind": {"const": "X", "type": "string"}}}
    out = kubernetes_schema("Unknown", schema, v3=True, ref_root="#/d/", models={})
    assert out["properties"]["kind"] == {"enum": ["X"], "type": "string"}


def test_a_quantity_refers_to_kubernetes_shared_quantity_definition() -> None:
    guest = V3["io.kubevirt.v1.VirtualMachine.Memory"]["properties"]["guest"]
    assert guest["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}]
    assert V2["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    requests = V2["io.kubevirt.v1.VirtualMachine.ResourceRequirements"]["properties"]["requests"]
    assert requests["additionalProperties"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"
    }
