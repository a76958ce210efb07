"""The OpenAPI documents list the subresources.kubevirt.io/v1 paths vmplane serves."""

from __future__ import annotations

import json

from vmplane.api.guest_ops import AGENT_QUERIES, GuestAction
from vmplane.apiserver import console, streams, subresources, volume_subresources
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.openapi import OpenApiDocs
from vmplane.apiserver.openapi_subresources import GROUP_VERSION_PATH, SUBRESOURCES

DOCS = OpenApiDocs(default_registry())
VM_ACTIONS = {sub.action for sub in SUBRESOURCES if sub.resource == "virtualmachines"}
VMI_ACTIONS = {sub.action for sub in SUBRESOURCES if sub.resource == "virtualmachineinstances"}


def test_the_table_lists_every_routed_subresource() -> None:
    assert set(subresources._ACTIONS) | set(volume_subresources.VOLUME_ACTIONS) == VM_ACTIONS
    assert console.CONSOLE_PATH in {sub.path for sub in SUBRESOURCES}
    assert streams.VNC_PATH in {sub.path for sub in SUBRESOURCES}


def test_the_table_lists_every_guest_operation_and_agent_query() -> None:
    volumes = set(volume_subresources.VOLUME_ACTIONS)
    assert {a.value for a in GuestAction} | AGENT_QUERIES | {"console", "vnc"} | volumes == VMI_ACTIONS


def test_openapi_v2_has_each_subresource_operation() -> None:
    paths = json.loads(DOCS.v2)["paths"]
    restart = paths["/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/restart"]
    assert restart["put"]["operationId"] == "v1Restart"
    assert [p["name"] for p in restart["parameters"]] == ["name", "namespace"]
    revert = paths["/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/revert"]
    assert revert["put"]["responses"]["200"]["schema"] == {
        "$ref": "#/definitions/io.kubevirt.v1.VirtualMachine"
    }
    vmi_console = paths[
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
    ]
    assert vmi_console["get"]["operationId"] == "v1Console"


def test_openapi_v3_has_a_document_for_the_subresources_group() -> None:
    index = json.loads(DOCS.v3_index)["paths"]
    assert index[GROUP_VERSION_PATH]["serverRelativeURL"].startswith(
        f"/openapi/v3/{GROUP_VERSION_PATH}?hash="
    )
    document = json.loads(DOCS.v3_by_path[GROUP_VERSION_PATH])
    operations = {
        op["operationId"]
        for item in document["paths"].values()
        for m, op in item.items()
        if m != "parameters"
    }
    assert operations == {sub.operation_id for sub in SUBRESOURCES}
    start = document["paths"][
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/start"
    ]
    assert "202" in start["put"]["responses"]
