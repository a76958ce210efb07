"""The ObjectClient contract, run against both implementations: the in-process door and HTTPS.

Every behaviour a controller or agent relies on: the Store's error tree for not-found, conflicts
and duplicates; status writes; merge patches; selectors on list and watch; a watch from a list's
resourceVersion; refusals by authorization and admission as typed errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_support import RunningApi, running_api

from vmplane.api.resources import NODES
from vmplane.apiserver.authz import Role
from vmplane.client.base import ForbiddenError, InvalidError, ObjectClient
from vmplane.store.base import AlreadyExistsError, ConflictError, JsonObject, NotFoundError, WatchEvent

pytestmark = pytest.mark.timeout(60)

KINDS = ["in-process", "https"]


def node(name: str, **labels: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(tmp_path / "data") as running:
        yield running


@pytest.fixture(params=KINDS)
async def client(request: pytest.FixtureRequest, api: RunningApi) -> AsyncIterator[ObjectClient]:
    made = api.client(request.param)
    yield made
    await made.close()


async def test_create_returns_the_stored_object_and_get_reads_it(client: ObjectClient) -> None:
    created = await client.create(NODES, node("n1"))
    assert created["metadata"]["uid"]
    assert created["metadata"]["resourceVersion"]
    assert await client.get(NODES, "", "n1") == created


async def test_get_of_a_missing_object_raises_not_found(client: ObjectClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get(NODES, "", "nowhere")


async def test_create_of_a_taken_name_raises_already_exists(client: ObjectClient) -> None:
    await client.create(NODES, node("n1"))
    with pytest.raises(AlreadyExistsError):
        await client.create(NODES, node("n1"))


async def test_update_with_a_stale_resource_version_raises_conflict(client: ObjectClient) -> None:
    created = await client.create(NODES, node("n1"))
    await client.update(NODES, {**created, "spec": {"unschedulable": True}})
    with pytest.raises(ConflictError):
        await client.update(NODES, {**created, "spec": {"podCIDR": "10.0.0.0/24"}})


async def test_update_status_changes_the_status_only(client: ObjectClient) -> None:
    created = await client.create(NODES, node("n1"))
    updated = await client.update_status(
        NODES, {**created, "spec": {"unschedulable": True}, "status": {"phase": "Running"}}
    )
    assert updated["status"]["phase"] == "Running"
    assert not (updated.get("spec") or {}).get("unschedulable")


async def test_merge_patch_changes_only_what_it_names(client: ObjectClient) -> None:
    await client.create(NODES, node("n1", zone="a", rack="r1"))
    patched = await client.patch(NODES, "", "n1", {"metadata": {"labels": {"zone": "b"}}})
    assert patched["metadata"]["labels"] == {"zone": "b", "rack": "r1"}


async def test_json_patch_applies_its_operations(client: ObjectClient) -> None:
    await client.create(NODES, node("n1", zone="a"))
    patched = await client.patch(
        NODES, "", "n1", [{"op": "remove", "path": "/metadata/labels/zone"}], patch_type="json"
    )
    assert "zone" not in (patched["metadata"].get("labels") or {})


async def test_delete_returns_the_object_and_it_is_gone(client: ObjectClient) -> None:
    await client.create(NODES, node("n1"))
    deleted = await client.delete(NODES, "", "n1")
    assert deleted["metadata"]["name"] == "n1"
    with pytest.raises(NotFoundError):
        await client.get(NODES, "", "n1")


async def test_delete_with_a_stale_resource_version_raises_conflict(client: ObjectClient) -> None:
    created = await client.create(NODES, node("n1"))
    await client.patch(NODES, "", "n1", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(ConflictError):
        await client.delete(NODES, "", "n1", resource_version=int(created["metadata"]["resourceVersion"]))


async def test_list_applies_label_and_field_selectors(client: ObjectClient) -> None:
    for name, zone in (("n1", "a"), ("n2", "b"), ("n3", "a")):
        await client.create(NODES, node(name, zone=zone))
    by_label = await client.list(NODES, label_selector="zone=a")
    assert [o["metadata"]["name"] for o in by_label.items] == ["n1", "n3"]
    by_field = await client.list(NODES, field_selector="metadata.name=n2")
    assert [o["metadata"]["name"] for o in by_field.items] == ["n2"]
    assert by_field.resource_version >= int(by_label.items[-1]["metadata"]["resourceVersion"])


async def _events(client: ObjectClient, since: int, count: int, **selectors: str) -> list[WatchEvent]:
    seen: list[WatchEvent] = []
    async for event in client.watch(NODES, since=since, **selectors):
        if event.type != "BOOKMARK":
            seen.append(event)
        if len(seen) == count:
            break
    return seen


async def test_watch_from_a_list_delivers_every_later_change_in_order(client: ObjectClient) -> None:
    listed = await client.list(NODES)
    watching = asyncio.create_task(_events(client, listed.resource_version, 3))
    await client.create(NODES, node("n1"))
    await client.patch(NODES, "", "n1", {"metadata": {"labels": {"a": "b"}}})
    await client.delete(NODES, "", "n1")
    events = await asyncio.wait_for(watching, 10)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [e.resource_version for e in events]
    assert versions == sorted(versions)
    assert versions[0] > listed.resource_version


async def test_watch_with_a_selector_sees_only_matching_objects(client: ObjectClient) -> None:
    listed = await client.list(NODES)
    watching = asyncio.create_task(_events(client, listed.resource_version, 1, label_selector="zone=a"))
    await client.create(NODES, node("other", zone="b"))
    await client.create(NODES, node("wanted", zone="a"))
    (event,) = await asyncio.wait_for(watching, 10)
    assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "wanted")


async def test_a_write_the_identity_may_not_make_raises_forbidden(api: RunningApi) -> None:
    for kind in KINDS:
        viewer = api.client(kind, Role.VIEWER)
        try:
            with pytest.raises(ForbiddenError):
                await viewer.create(NODES, node("n1"))
        finally:
            await viewer.close()


async def test_an_object_admission_refuses_raises_invalid(client: ObjectClient) -> None:
    with pytest.raises(InvalidError) as refused:
        await client.create(NODES, node("Not_A_Name"))
    assert "metadata.name" in str(refused.value)
