"""resourceVersion rules of list and watch against a running server, as kube-apiserver has them."""

from __future__ import annotations

import pytest
from test_api_support import ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
__all__ = ["api_server"]

VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


def test_a_watch_from_a_future_resource_version_is_too_large(api_server: ApiServer) -> None:
    ahead = int(api_server.revision()) + 10_000
    status, body, _ = api_server.request("GET", f"{VMS}?watch=true&resourceVersion={ahead}")
    assert status == 504
    assert body["message"].startswith(f"Timeout: Too large resource version: {ahead}, current: ")
    assert body["details"]["causes"][0]["type"] == "ResourceVersionTooLarge"


def test_a_list_at_a_future_resource_version_is_too_large(api_server: ApiServer) -> None:
    ahead = int(api_server.revision()) + 10_000
    status, body, _ = api_server.request("GET", f"{VMS}?resourceVersion={ahead}")
    assert status == 504
    assert body["reason"] == "Timeout"


def test_a_continue_token_from_a_vm_list_is_refused_for_nodes(api_server: ApiServer) -> None:
    for name in ("page-a", "page-b"):
        vm = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
        }
        assert api_server.request("POST", VMS, body=vm)[0] == 201
    status, page, _ = api_server.request("GET", f"{VMS}?limit=1")
    assert status == 200
    token = page["metadata"]["continue"]
    status, body, _ = api_server.request("GET", f"/api/v1/nodes?limit=1&continue={token}")
    assert status == 400
    assert body["message"].startswith("continue key is not valid")
    status, rest, _ = api_server.request("GET", f"{VMS}?limit=1&continue={token}")
    assert status == 200
    assert rest["kind"] == "VirtualMachineList"
