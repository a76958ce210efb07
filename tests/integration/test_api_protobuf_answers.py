"""Answers in protobuf for clients that ask for it first (client-go's typed clients, kubectl's typed
commands), for the built-in kinds and their lists; JSON for everything else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_api_support import ApiServer, api_server

from vmplane.apiserver.protobuf import MAGIC, decode_object
from vmplane.apiserver.protobuf import MEDIA_TYPE as PROTOBUF

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

CLIENT_GO_ACCEPT = f"{PROTOBUF}, application/json"


def _raw(server: ApiServer, path: str, accept: str) -> tuple[int, str, bytes]:
    response = server.http().request(
        "GET",
        server.url + path,
        headers={"Authorization": f"Bearer {server.token}", "Accept": accept},
        timeout=30,
    )
    return response.status, response.headers.get("Content-Type", ""), response.data


def _as_protobuf(server: ApiServer, path: str) -> dict[str, Any]:
    status, content_type, body = _raw(server, path, CLIENT_GO_ACCEPT)
    assert (status, content_type) == (200, PROTOBUF)
    assert body.startswith(MAGIC)
    return decode_object(body)


def _as_json(server: ApiServer, path: str) -> dict[str, Any]:
    status, body, _ = server.request("GET", path)
    assert status == 200
    return body


def test_a_namespace_in_protobuf_is_the_namespace_in_json(api_server: ApiServer) -> None:
    api_server.kubectl("create", "namespace", "pb-answer")
    path = "/api/v1/namespaces/pb-answer"
    decoded = _as_protobuf(api_server, path)
    assert decoded == _as_json(api_server, path)
    assert decoded["metadata"]["managedFields"][0]["manager"] == "kubectl-create"


def _without_zeros(value: Any) -> Any:
    """``value`` without zero scalars, which decode_object leaves out as Go's omitempty does (the wire
    has them: a Go client reads ``Port: 0`` back)."""
    if isinstance(value, dict):
        return {k: _without_zeros(v) for k, v in value.items() if v not in (0, "", False)}
    if isinstance(value, list):
        return [_without_zeros(v) for v in value]
    return value


def _same_write(server: ApiServer, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The object read in protobuf and in JSON, once it exists and both reads are of the same write with
    a status: the agent registers its node after the server is up, then goes on heartbeating into it."""
    deadline = time.monotonic() + 30
    while server.request("GET", path)[0] == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    while True:
        decoded, listed = _as_protobuf(server, path), _as_json(server, path)
        same = decoded["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
        if (same and "status" in listed) or time.monotonic() > deadline:
            return decoded, listed
        time.sleep(0.1)


def test_a_node_in_protobuf_loses_nothing(api_server: ApiServer) -> None:
    decoded, listed = _same_write(api_server, "/api/v1/nodes/node01")
    assert decoded == _without_zeros(listed)


def test_a_namespace_list_is_a_namespace_list_message(api_server: ApiServer) -> None:
    decoded = _as_protobuf(api_server, "/api/v1/namespaces")
    listed = _as_json(api_server, "/api/v1/namespaces")
    assert (decoded["apiVersion"], decoded["kind"]) == ("v1", "NamespaceList")
    assert [i["metadata"]["name"] for i in decoded["items"]] == [
        i["metadata"]["name"] for i in listed["items"]
    ]
    assert int(decoded["metadata"]["resourceVersion"]) > 0


def test_a_paged_list_keeps_its_continue_token(api_server: ApiServer) -> None:
    decoded = _as_protobuf(api_server, "/api/v1/namespaces?limit=1")
    assert len(decoded["items"]) == 1
    assert decoded["metadata"]["continue"]
    assert decoded["metadata"]["remainingItemCount"] >= 1


def test_a_custom_kind_stays_json_under_a_protobuf_accept(api_server: ApiServer) -> None:
    status, content_type, body = _raw(
        api_server, "/apis/kubevirt.io/v1/namespaces/default/virtualmachines", CLIENT_GO_ACCEPT
    )
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["kind"] == "VirtualMachineList"


def test_json_first_gets_json(api_server: ApiServer) -> None:
    status, content_type, _ = _raw(api_server, "/api/v1/namespaces/default", f"application/json, {PROTOBUF}")
    assert (status, content_type) == (200, "application/json")


def test_kubectl_typed_commands_read_protobuf_answers(api_server: ApiServer) -> None:
    created = api_server.kubectl("create", "namespace", "pb-kubectl", "-v=8")
    assert "namespace/pb-kubectl created" in created.stdout
    assert f"Content-Type: {PROTOBUF}" in created.stderr
    described = api_server.kubectl("describe", "node", "node01").stdout
    assert "Name:               node01" in described
    assert api_server.kubectl("auth", "can-i", "list", "namespaces").stdout.strip() == "yes"
