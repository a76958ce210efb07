"""Lists served from the watch cache, through the API in-process: consistency, selectors, paging, 410."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.kinds import default_registry
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RESOURCE = "virtualmachines.kubevirt.io"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
ALL_VMS = "/apis/kubevirt.io/v1/virtualmachines"
TABLE = {**AUTH, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
MERGE = {**AUTH, "Content-Type": "application/merge-patch+json"}

Client = TestClient[Any, Any]


@pytest.fixture(autouse=True)
def served_from_the_cache(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every read here must come from the watch cache, not from its fall-back to the store."""
    yield
    assert not [r for r in caplog.get_records("call") if "listing from the store" in r.getMessage()]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore(history=50)
    await bootstrap(memory)
    yield memory
    await memory.close()


@pytest.fixture
async def api(store: MemoryStore) -> AsyncIterator[Client]:
    app = create_app(store=store, registry=default_registry(), token=TOKEN)
    async with TestClient(TestServer(app)) as client:
        yield client


def _vm(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"runStrategy": "Halted"},
    }


async def _get(api: Client, path: str, headers: dict[str, str] = AUTH) -> Any:
    response = await api.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


def _names(body: Any) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


async def test_list_is_the_stores_list(api: Client, store: MemoryStore) -> None:
    for name in ("b", "a", "c"):
        await api.post(VMS, json=_vm(name), headers=AUTH)
    response = await api.get(VMS, headers=AUTH)
    assert response.content_type == "application/json"
    body = await response.json()
    listed = await store.list(RESOURCE, "default")
    assert body == {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineList",
        "metadata": {"resourceVersion": str(listed.resource_version)},
        "items": listed.items,
    }


async def test_every_write_through_the_api_is_in_the_next_list(api: Client) -> None:
    await _get(api, VMS)  # the cache is running before the writes
    for index in range(10):
        created = await (await api.post(VMS, json=_vm(f"vm-{index}"), headers=AUTH)).json()
        body = await _get(api, VMS)
        assert f"vm-{index}" in _names(body)
        assert int(body["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
        patched = await api.patch(
            f"{VMS}/vm-{index}", data='{"metadata":{"labels":{"n":"x"}}}', headers=MERGE
        )
        assert patched.status == 200
        assert f"vm-{index}" in _names(await _get(api, f"{VMS}?labelSelector=n%3Dx"))
        if index % 2:
            assert (await api.delete(f"{VMS}/vm-{index}", headers=AUTH)).status == 200
            assert f"vm-{index}" not in _names(await _get(api, VMS))


async def test_writes_straight_to_the_store_are_in_the_next_list(api: Client, store: MemoryStore) -> None:
    await _get(api, VMS)
    await store.create(RESOURCE, _vm("direct"))
    assert _names(await _get(api, VMS)) == ["direct"]  # the cache's watch delivered it: it is live
    await store.create("events", {"metadata": {"name": "e", "namespace": "default"}})
    body = await _get(api, VMS)
    assert body["metadata"]["resourceVersion"] == str(await store.current_revision())


async def test_label_and_field_selectors(api: Client) -> None:
    await api.post(VMS, json=_vm("web-1", app="web", tier="1"), headers=AUTH)
    await api.post(VMS, json=_vm("web-2", app="web", tier="2"), headers=AUTH)
    await api.post(VMS, json=_vm("db", app="db"), headers=AUTH)
    assert _names(await _get(api, f"{VMS}?labelSelector=app%3Dweb")) == ["web-1", "web-2"]
    assert _names(await _get(api, f"{VMS}?labelSelector=app%3Dweb,tier!%3D1")) == ["web-2"]
    assert _names(await _get(api, f"{VMS}?labelSelector=!tier")) == ["db"]
    assert _names(await _get(api, f"{VMS}?fieldSelector=metadata.name%3Ddb")) == ["db"]
    assert _names(await _get(api, f"{VMS}?fieldSelector=metadata.name!%3Ddb&labelSelector=tier")) == [
        "web-1",
        "web-2",
    ]
    assert (await api.get(f"{VMS}?labelSelector=a%20b", headers=AUTH)).status == 400
    assert (await api.get(f"{VMS}?fieldSelector=spec.x%3D1", headers=AUTH)).status == 400


async def test_all_namespaces_in_namespace_then_name_order(api: Client, store: MemoryStore) -> None:
    await store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "alpha"}})
    for namespace, name in (("default", "b"), ("alpha", "z"), ("default", "a")):
        created = await api.post(
            f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines",
            json=_vm(name, namespace),
            headers=AUTH,
        )
        assert created.status == 201
    body = await _get(api, ALL_VMS)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("alpha", "z"),
        ("default", "a"),
        ("default", "b"),
    ]


async def test_pages_are_one_snapshot_despite_writes_between_them(api: Client) -> None:
    for index in range(5):
        await api.post(VMS, json=_vm(f"vm-{index}"), headers=AUTH)
    first = await _get(api, f"{VMS}?limit=2")
    assert (_names(first), first["metadata"]["remainingItemCount"]) == (["vm-0", "vm-1"], 3)
    await api.delete(f"{VMS}/vm-3", headers=AUTH)
    await api.post(VMS, json=_vm("vm-5"), headers=AUTH)
    token = first["metadata"]["continue"]
    second = await _get(api, f"{VMS}?limit=2&continue={token}")
    assert _names(second) == ["vm-2", "vm-3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    last = await _get(api, f"{VMS}?limit=2&continue={second['metadata']['continue']}")
    assert _names(last) == ["vm-4"]
    assert "continue" not in last["metadata"]
    assert _names(await _get(api, VMS)) == ["vm-0", "vm-1", "vm-2", "vm-4", "vm-5"]


async def test_paged_selected_table(api: Client) -> None:
    for index in range(4):
        await api.post(VMS, json=_vm(f"vm-{index}", keep="yes" if index != 1 else "no"), headers=AUTH)
    page = await _get(api, f"{VMS}?limit=2&labelSelector=keep%3Dyes", headers=TABLE)
    assert page["kind"] == "Table"
    assert [row["cells"][0] for row in page["rows"]] == ["vm-0", "vm-2"]
    assert page["metadata"]["remainingItemCount"] == 1
    rest = await _get(api, f"{VMS}?limit=2&continue={page['metadata']['continue']}", headers=TABLE)
    assert [row["cells"][0] for row in rest["rows"]] == ["vm-3"]


async def test_a_page_after_modifications_shows_the_objects_as_they_were(api: Client) -> None:
    for index in range(4):
        await api.post(VMS, json=_vm(f"vm-{index}", gen="one"), headers=AUTH)
    first = await _get(api, f"{VMS}?limit=2")
    for index in range(4):
        await api.patch(f"{VMS}/vm-{index}", data='{"metadata":{"labels":{"gen":"two"}}}', headers=MERGE)
    rest = await _get(api, f"{VMS}?limit=2&continue={first['metadata']['continue']}")
    assert [item["metadata"]["labels"]["gen"] for item in rest["items"]] == ["one", "one"]


async def test_an_exact_list_at_an_old_revision_is_served_from_history(api: Client) -> None:
    await api.post(VMS, json=_vm("a"), headers=AUTH)
    before = await _get(api, VMS)
    await api.post(VMS, json=_vm("b"), headers=AUTH)
    await api.delete(f"{VMS}/a", headers=AUTH)
    rv = before["metadata"]["resourceVersion"]
    old = await _get(api, f"{VMS}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert (_names(old), old["metadata"]["resourceVersion"]) == (["a"], rv)


async def test_continue_token_past_the_retained_history_is_410(api: Client) -> None:
    for index in range(3):
        await api.post(VMS, json=_vm(f"vm-{index}"), headers=AUTH)
    first = await _get(api, f"{VMS}?limit=1")
    for index in range(60):  # the store keeps 50 changes
        await api.post(VMS, json=_vm(f"later-{index}"), headers=AUTH)
    response = await api.get(f"{VMS}?limit=1&continue={first['metadata']['continue']}", headers=AUTH)
    body = await response.json()
    assert (response.status, body["reason"]) == (410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")
    assert (await api.get(f"{VMS}?continue=not-a-token", headers=AUTH)).status == 400


async def _lines(response: Any, count: int) -> list[dict[str, Any]]:
    lines = []
    for _ in range(count):
        line = await asyncio.wait_for(response.content.readline(), timeout=5)
        assert line, "stream ended early"
        lines.append(json.loads(line))
    return lines


async def test_watch_from_a_list_version_gets_exactly_the_later_changes(api: Client) -> None:
    for name in ("a", "b"):
        await api.post(VMS, json=_vm(name), headers=AUTH)
    listed = await _get(api, VMS)
    await api.post(VMS, json=_vm("c"), headers=AUTH)
    await api.delete(f"{VMS}/a", headers=AUTH)
    rv = listed["metadata"]["resourceVersion"]
    response = await api.get(f"{VMS}?watch=1&resourceVersion={rv}&timeoutSeconds=1", headers=AUTH)
    events = await _lines(response, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "c"),
        ("DELETED", "a"),
    ]
    assert await asyncio.wait_for(response.content.readline(), timeout=5) == b""


async def test_watch_starts_with_the_current_objects_then_streams(api: Client, store: MemoryStore) -> None:
    await api.post(VMS, json=_vm("a", app="web"), headers=AUTH)
    await api.post(VMS, json=_vm("b"), headers=AUTH)
    response = await api.get(f"{VMS}?watch=1&labelSelector=app%3Dweb&timeoutSeconds=5", headers=AUTH)
    [initial] = await _lines(response, 1)
    assert (initial["type"], initial["object"]) == ("ADDED", await store.get(RESOURCE, "default", "a"))
    await api.patch(f"{VMS}/b", data='{"metadata":{"labels":{"app":"web"}}}', headers=MERGE)
    [added] = await _lines(response, 1)
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "b")
    response.close()


async def test_watch_from_a_compacted_version_is_410(api: Client) -> None:
    listed = await _get(api, VMS)
    for index in range(60):  # the store keeps 50 changes
        await api.post(VMS, json=_vm(f"vm-{index}"), headers=AUTH)
    rv = listed["metadata"]["resourceVersion"]
    response = await api.get(f"{VMS}?watch=1&resourceVersion={rv}", headers=AUTH)
    [event] = await _lines(response, 1)
    assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
    assert len(_names(await _get(api, VMS))) == 60
