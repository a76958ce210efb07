"""Pure pieces of the API server: selectors, patches, tables, discovery, OpenAPI, routing, paging."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vmplane.api import fieldpath, selectors
from vmplane.apiserver import discovery, openapi, paging, patch, routing, tables
from vmplane.apiserver.context import wants_table
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.status import ApiError

REGISTRY = default_registry()


def _obj(name: str = "a", labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {}}, **extra}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web,db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "db"}, False),
        ("app notin (web)", {}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("app in (a, b),tier", {"app": "b", "tier": "1"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("", {}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    parsed = selectors.parse_label_selector(selector)
    assert selectors.matches_labels(parsed, _obj(labels=labels)) is expected


@pytest.mark.parametrize("bad", ["app in (", "a=b,,c", "app=b c", "-x=1", "n>x"])
def test_bad_label_selector(bad: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_label_selector(bad)


def test_field_selector() -> None:
    parsed = selectors.parse_field_selector("metadata.name=a,metadata.namespace!=kube-system")
    assert selectors.matches_fields(parsed, _obj("a"))
    assert not selectors.matches_fields(parsed, _obj("b"))
    event = {"involvedObject": {"name": "vm1", "kind": "VirtualMachine"}}
    allowed = ("involvedObject.name", "involvedObject.kind")
    assert selectors.matches_fields(selectors.parse_field_selector("involvedObject.name=vm1", allowed), event)
    with pytest.raises(selectors.SelectorError, match=r"field label not supported: spec\.x"):
        selectors.parse_field_selector("spec.x=1")


@pytest.mark.parametrize(
    ("target", "patch_body", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": "b"}, {"a": {"x": None}}, {"a": {}}),
    ],
    ids=["replace", "add", "remove", "nested", "list-replaces", "scalar-to-object"],
)
def test_merge_patch_rfc7386(target: Any, patch_body: Any, expected: Any) -> None:
    assert patch.merge_patch(target, patch_body) == expected


def test_json_patch_ops_and_errors() -> None:
    doc = {"spec": {"n": 1, "l": [1]}}
    ops = [
        {"op": "test", "path": "/spec/n", "value": 1},
        {"op": "add", "path": "/spec/l/-", "value": 2},
        {"op": "move", "from": "/spec/n", "path": "/spec/m"},
    ]
    assert patch.json_patch(doc, json.dumps(ops).encode()) == {"spec": {"m": 1, "l": [1, 2]}}
    assert doc == {"spec": {"n": 1, "l": [1]}}
    with pytest.raises(ApiError) as failed:
        patch.json_patch(doc, b'[{"op":"test","path":"/spec/n","value":2}]')
    assert failed.value.code == 422
    with pytest.raises(ApiError) as malformed:
        patch.json_patch(doc, b'{"op":"add"}')
    assert malformed.value.code == 400


def test_strategic_merge_patch_directives() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"finalizers": ["x"]}}
    body = (
        b'{"$setElementOrder/spec": [], "metadata": {"labels": {"a": null, "b": "2"}},'
        b' "spec": {"$patch": "delete"}}'
    )
    assert patch.strategic_merge_patch(target, body) == {"metadata": {"labels": {"b": "2"}}}


def test_apply_merges_maps_and_replaces_atomic_lists() -> None:
    current = {"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1, "l": [1, 2]}}
    applied = {"metadata": {"name": "a"}, "spec": {"l": [3]}}
    assert fieldpath.merge(current, applied) == {
        "metadata": {"name": "a", "uid": "u"},
        "spec": {"x": 1, "l": [3]},
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (303, "5m3s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 5, "3h5m"),
        (10 * 3600, "10h"),
        (2 * 86400, "2d"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_vm_and_vmi_tables() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    created = (now - timedelta(minutes=5, seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    vmi = {
        "metadata": {"name": "v", "creationTimestamp": created},
        "status": {
            "phase": "Running",
            "nodeName": "n1",
            "interfaces": [{"ipAddress": "10.0.0.2"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    vmi_type = REGISTRY.lookup("kubevirt.io", "v1", "virtualmachineinstances")
    assert vmi_type is not None
    table = tables.build_table(vmi_type, [vmi], now=now)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Age",
        "Phase",
        "IP",
        "NodeName",
        "Ready",
    ]
    assert table["rows"][0]["cells"] == ["v", "5m3s", "Running", "10.0.0.2", "n1", "True"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    vm_type = REGISTRY.lookup("kubevirt.io", "v1", "virtualmachines")
    assert vm_type is not None
    vm = {"metadata": {"name": "m"}, "status": {"printableStatus": "Stopped"}}
    assert tables.build_table(vm_type, [vm], now=now)["rows"][0]["cells"] == ["m", "<unknown>", "Stopped", ""]


@pytest.mark.parametrize(
    ("accept", "table"),
    [
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
            "application/json",
            True,
        ),
        ("application/json", False),
        (None, False),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", False),
    ],
)
def test_table_negotiation(accept: str | None, table: bool) -> None:
    assert wants_table(accept) is table


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2",
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2beta1",
        ),
        ("application/json", None),
        (None, None),
    ],
)
def test_discovery_negotiation(accept: str | None, version: str | None) -> None:
    assert discovery.choose_discovery(accept) == version


def test_aggregated_discovery_document() -> None:
    doc = discovery.aggregated(REGISTRY, core=False, version="v2")
    kubevirt = next(i for i in doc["items"] if i["metadata"]["name"] == "kubevirt.io")
    vm = next(r for r in kubevirt["versions"][0]["resources"] if r["resource"] == "virtualmachines")
    assert vm["shortNames"] == ["vm", "vms"]
    assert vm["scope"] == "Namespaced"
    assert vm["singularResource"] == "virtualmachine"
    assert vm["categories"] == ["all"]
    assert vm["subresources"][0]["subresource"] == "status"
    core = discovery.aggregated(REGISTRY, core=True, version="v2")
    namespaces = next(
        r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "namespaces"
    )
    assert namespaces["scope"] == "Cluster"
    legacy = discovery.api_resource_list(REGISTRY, "kubevirt.io", "v1")
    assert "virtualmachines/status" in [r["name"] for r in legacy["resources"]]


def test_openapi_v3_declares_field_validation_on_patch() -> None:
    docs = openapi.OpenApiDocs(REGISTRY)
    index = json.loads(docs.v3_index)
    assert index["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"].startswith(
        "/openapi/v3/apis/kubevirt.io/v1?hash="
    )
    doc = json.loads(docs.v3_by_path["apis/kubevirt.io/v1"])
    item = doc["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"]
    assert item["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "kubevirt.io",
        "version": "v1",
        "kind": "VirtualMachine",
    }
    assert "fieldValidation" in [p["name"] for p in item["patch"]["parameters"]]
    assert "io.kubevirt.v1.VirtualMachine" in doc["components"]["schemas"]


def test_openapi_hoists_pydantic_defs() -> None:
    import dataclasses

    vm = REGISTRY.lookup("kubevirt.io", "v1", "virtualmachines")
    assert vm is not None
    schema = {
        "type": "object",
        "properties": {"spec": {"$ref": "#/$defs/Spec"}},
        "$defs": {"Spec": {"type": "object"}},
    }
    typed = dataclasses.replace(vm, schema=schema)
    docs = openapi.OpenApiDocs(type(REGISTRY)([typed]))
    doc = json.loads(docs.v3_by_path["apis/kubevirt.io/v1"])
    schemas = doc["components"]["schemas"]
    assert schemas["io.kubevirt.v1.VirtualMachine"]["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.kubevirt.v1.VirtualMachine.Spec"}
    ]
    assert "io.kubevirt.v1.VirtualMachine.Spec" in schemas


@pytest.mark.parametrize(
    ("group", "tail", "expected"),
    [
        ("kubevirt.io", "namespaces/ns1/virtualmachines", ("virtualmachines", "ns1", None, "")),
        ("kubevirt.io", "namespaces/ns1/virtualmachines/x/status", ("virtualmachines", "ns1", "x", "status")),
        ("kubevirt.io", "virtualmachines", ("virtualmachines", None, None, "")),
        ("", "namespaces/default", ("namespaces", "", "default", "")),
        ("", "namespaces", ("namespaces", "", None, "")),
        ("", "namespaces/default/events/e1", ("events", "default", "e1", "")),
    ],
)
def test_routing(group: str, tail: str, expected: tuple[str, str | None, str | None, str]) -> None:
    target = routing.parse_target(REGISTRY, group, "v1", tail)
    assert (target.resource_type.plural, target.namespace, target.name, target.subresource) == expected


@pytest.mark.parametrize("tail", ["nothings", "virtualmachines/x", "namespaces/ns/virtualmachines/x/y", ""])
def test_routing_unknown_paths_are_404(tail: str) -> None:
    with pytest.raises(ApiError) as err:
        routing.parse_target(REGISTRY, "kubevirt.io", "v1", tail)
    assert err.value.code == 404


def _page(items: list[dict[str, Any]], limit: int, scope: str = "vms") -> paging.Page[dict[str, Any]]:
    return paging.page(
        items,
        key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]),
        resource_version=7,
        limit=limit,
        scope=scope,
        label_selector="app=web",
        field_selector="",
    )


def test_a_continue_token_holds_the_revision_the_last_key_and_the_selectors() -> None:
    first = _page([_obj(str(i)) for i in range(5)], 2)
    assert ([o["metadata"]["name"] for o in first.items], first.remaining) == (["0", "1"], 3)
    resume = paging.decode_token(first.continue_token, scope="vms")
    assert resume == paging.Resume(7, ("default", "1"), "vms", "app=web", "")


def test_a_list_that_fits_in_one_page_has_no_token() -> None:
    assert _page([_obj("a")], 1).continue_token == ""


def test_a_continue_token_is_refused_for_another_list() -> None:
    first = _page([_obj(str(i)) for i in range(3)], 1, scope="virtualmachines.kubevirt.io")
    with pytest.raises(ApiError) as err:
        paging.decode_token(first.continue_token, scope="nodes")
    assert err.value.code == 400
    assert str(err.value).startswith("continue key is not valid")


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"rv": "7", "start": ["a", "b"], "scope": "vms", "labels": "", "fields": ""}', b"[]"],
    ids=["not-json", "rv-not-an-integer", "not-an-object"],
)
def test_a_malformed_continue_token_is_400(raw: bytes) -> None:
    token = base64.urlsafe_b64encode(raw).decode()
    with pytest.raises(ApiError) as err:
        paging.decode_token(token, scope="vms")
    assert err.value.code == 400
