"""resourceVersion rules of list and watch against a running server, as kube-apiserver has them."""

from __future__ import annotations

import json

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


def _watch_lines(server: ApiServer, query: str) -> list[dict[str, object]]:
    response = server.http().request(
        "GET",
        f"{server.url}{VMS}?watch=true&timeoutSeconds=1&{query}",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )
    assert response.status == 200
    return [json.loads(line) for line in response.data.splitlines() if line.strip()]


def _halted(name: str) -> dict[str, object]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }


def test_an_exact_list_of_an_older_revision_is_that_revisions_data(api_server: ApiServer) -> None:
    old = api_server.revision()
    assert api_server.request("POST", VMS, body=_halted("exact-a"))[0] == 201
    status, body, _ = api_server.request("GET", f"{VMS}?resourceVersion={old}&resourceVersionMatch=Exact")
    assert status == 200
    assert body["metadata"]["resourceVersion"] == old
    assert "exact-a" not in [item["metadata"]["name"] for item in body["items"]]


def test_an_exact_list_of_the_current_revision_is_served(api_server: ApiServer) -> None:
    # The controllers may write between the two requests; a quiet moment comes within a few tries.
    for _ in range(10):
        current = api_server.revision()
        status, body, _ = api_server.request(
            "GET", f"{VMS}?resourceVersion={current}&resourceVersionMatch=Exact"
        )
        if status != 410:
            break
    assert status == 200
    assert body["metadata"]["resourceVersion"] == current


def test_a_not_older_than_list_of_an_older_revision_serves_newer_data(api_server: ApiServer) -> None:
    old = api_server.revision()
    assert api_server.request("POST", VMS, body=_halted("newer-a"))[0] == 201
    status, body, _ = api_server.request(
        "GET", f"{VMS}?resourceVersion={old}&resourceVersionMatch=NotOlderThan"
    )
    assert status == 200
    assert int(body["metadata"]["resourceVersion"]) > int(old)
    assert "newer-a" in [item["metadata"]["name"] for item in body["items"]]


def test_a_watch_list_sends_the_state_then_the_initial_events_end_bookmark(api_server: ApiServer) -> None:
    assert api_server.request("POST", VMS, body=_halted("watch-list-a"))[0] == 201
    events = _watch_lines(
        api_server, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    )
    added = [e for e in events if e["type"] == "ADDED"]
    assert "watch-list-a" in [e["object"]["metadata"]["name"] for e in added]  # type: ignore[index]
    bookmark = next(i for i, e in enumerate(events) if e["type"] == "BOOKMARK")
    assert events[bookmark]["object"]["metadata"]["annotations"] == {  # type: ignore[index]
        "k8s.io/initial-events-end": "true"
    }
    assert all(e["type"] == "ADDED" for e in events[:bookmark])
