"""Continue tokens hold what they need: a list paged across a server restart is one list at one revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_api_support import ApiServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


def _vm(name: str, generation: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"gen": generation}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }


def _get(server: ApiServer, query: str) -> dict[str, Any]:
    status, body, _ = server.request("GET", f"{VMS}?{query}")
    assert status == 200, body
    return body


def _summary(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["metadata"]["name"], item["metadata"]["labels"]["gen"]) for item in body["items"]]


def test_a_continue_token_works_after_a_restart_and_pages_the_first_lists_revision(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        for index in range(5):
            assert server.request("POST", VMS, body=_vm(f"vm-{index}", "one"))[0] == 201
        first = _get(server, "limit=2")
        patch = {"metadata": {"labels": {"gen": "two"}}}
        status, _, _ = server.request(
            "PATCH", f"{VMS}/vm-3", body=patch, content_type="application/merge-patch+json"
        )
        assert status == 200
        assert server.request("DELETE", f"{VMS}/vm-4")[0] == 200
        assert server.request("POST", VMS, body=_vm("vm-5", "one"))[0] == 201
    finally:
        assert stop_server(server) == 0

    server = start_server(tmp_path)
    try:
        second = _get(server, f"limit=2&continue={first['metadata']['continue']}")
        last = _get(server, f"limit=2&continue={second['metadata']['continue']}")
        revision = first["metadata"]["resourceVersion"]
        assert second["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"] == revision
        paged = _summary(first) + _summary(second) + _summary(last)
        assert paged == [(f"vm-{index}", "one") for index in range(5)]
        assert "continue" not in last["metadata"]
        exact = _get(server, f"resourceVersion={revision}&resourceVersionMatch=Exact")
        assert _summary(exact) == paged
        assert [name for name, _ in _summary(_get(server, ""))] == ["vm-0", "vm-1", "vm-2", "vm-3", "vm-5"]
    finally:
        assert stop_server(server) == 0
