"""The API application in-process over a MemoryStore: admission wiring, watch semantics, dry run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vmplane.api.errors import CauseType, FieldCause, InvalidObjectError
from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.context import ServerSettings
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.registry import Admitted, FieldValidation, Operation
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
TOKEN = "test-token"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class UnknownFieldAdmitter:
    """Reports ``spec.foo`` as unknown, as a typed admitter does."""

    def admit(
        self,
        *,
        operation: Operation,
        new: dict[str, Any],
        old: dict[str, Any] | None,
        field_validation: FieldValidation,
        dry_run: bool,
    ) -> Admitted:
        if "foo" not in new.get("spec", {}):
            return Admitted(object=new)
        if field_validation == "Strict":
            cause = FieldCause("spec.foo", 'unknown field "spec.foo"', CauseType.UNKNOWN_FIELD)
            raise InvalidObjectError("VirtualMachine", new["metadata"]["name"], [cause])
        cleaned = {**new, "spec": {k: v for k, v in new["spec"].items() if k != "foo"}}
        warnings = ['unknown field "spec.foo"'] if field_validation == "Warn" else []
        return Admitted(object=cleaned, warnings=warnings)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore(history=20)
    await bootstrap(memory)
    yield memory
    await memory.close()


@pytest.fixture
async def api(store: MemoryStore) -> AsyncIterator[TestClient[Any, Any]]:
    registry = default_registry()
    vm = registry.lookup("kubevirt.io", "v1", "virtualmachines")
    assert vm is not None
    registry.register(dataclasses.replace(vm, admitter=UnknownFieldAdmitter()))
    app = create_app(
        store=store, registry=registry, token=TOKEN, settings=ServerSettings(bookmark_interval=0.2)
    )
    async with TestClient(TestServer(app)) as client:
        yield client


def _vm(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"runStrategy": "Halted", **spec},
    }


async def test_field_validation_strict_warn_ignore(api: TestClient[Any, Any], store: MemoryStore) -> None:
    before = await store.current_revision()
    strict = await api.post(f"{VMS}?fieldValidation=Strict", json=_vm("a", foo=1), headers=AUTH)
    body = await strict.json()
    assert strict.status == 422
    assert body["details"]["causes"] == [
        {"reason": "FieldValueUnknown", "message": 'unknown field "spec.foo"', "field": "spec.foo"}
    ]
    assert body["message"] == 'VirtualMachine.kubevirt.io "a" is invalid: spec.foo: unknown field "spec.foo"'
    assert await store.current_revision() == before
    warn = await api.post(f"{VMS}?fieldValidation=Warn", json=_vm("a", foo=1), headers=AUTH)
    assert warn.status == 201
    assert warn.headers.getall("Warning") == ['299 - "unknown field \\"spec.foo\\""']
    assert "foo" not in (await warn.json())["spec"]
    ignore = await api.post(f"{VMS}?fieldValidation=Ignore", json=_vm("b", foo=1), headers=AUTH)
    assert ignore.status == 201
    assert "Warning" not in ignore.headers


async def test_dry_run_update_bumps_generation_without_storing(
    api: TestClient[Any, Any], store: MemoryStore
) -> None:
    created = await (await api.post(VMS, json=_vm("d"), headers=AUTH)).json()
    revision = await store.current_revision()
    response = await api.patch(
        f"{VMS}/d?dryRun=All",
        data=json.dumps({"spec": {"runStrategy": "Always"}}),
        headers={**AUTH, "Content-Type": "application/merge-patch+json"},
    )
    body = await response.json()
    assert response.status == 200
    assert body["metadata"]["generation"] == 2
    assert body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert await store.current_revision() == revision
    assert (await store.get("virtualmachines.kubevirt.io", "default", "d"))["spec"]["runStrategy"] == "Halted"


async def test_status_subresource_and_main_resource_are_separate(api: TestClient[Any, Any]) -> None:
    await api.post(VMS, json={**_vm("s"), "status": {"printableStatus": "Ignored"}}, headers=AUTH)
    merge = {**AUTH, "Content-Type": "application/merge-patch+json"}
    main = await (
        await api.patch(f"{VMS}/s", data='{"status":{"printableStatus":"X"}}', headers=merge)
    ).json()
    assert "status" not in main
    status = await api.patch(
        f"{VMS}/s/status",
        data='{"status":{"printableStatus":"Y"},"spec":{"runStrategy":"Always"}}',
        headers=merge,
    )
    body = await status.json()
    assert body["status"] == {"printableStatus": "Y"}
    assert body["spec"]["runStrategy"] == "Halted"
    assert (await (await api.get(f"{VMS}/s/status", headers=AUTH)).json())["status"]["printableStatus"] == "Y"


async def _events(response: Any, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < count:
        line = await asyncio.wait_for(response.content.readline(), timeout=5)
        assert line, "stream ended early"
        events.append(json.loads(line))
    return events


async def test_watch_from_expired_version_sends_410(api: TestClient[Any, Any]) -> None:
    for index in range(30):
        await api.post(VMS, json=_vm(f"e{index}"), headers=AUTH)
    response = await api.get(f"{VMS}?watch=1&resourceVersion=1", headers=AUTH)
    assert response.status == 200
    [event] = await _events(response, 1)
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert event["object"]["message"].startswith("too old resource version: 1")


async def test_watch_selector_transitions_and_bookmarks(api: TestClient[Any, Any]) -> None:
    await api.post(VMS, json=_vm("w"), headers=AUTH)
    response = await api.get(
        f"{VMS}?watch=true&labelSelector=app%3Dweb&allowWatchBookmarks=true&timeoutSeconds=10", headers=AUTH
    )
    merge = {**AUTH, "Content-Type": "application/merge-patch+json"}
    await api.patch(f"{VMS}/w", data='{"metadata":{"labels":{"app":"web"}}}', headers=merge)
    await api.patch(f"{VMS}/w", data='{"spec":{"runStrategy":"Manual"}}', headers=merge)
    await api.patch(f"{VMS}/w", data='{"metadata":{"labels":{"app":"db"}}}', headers=merge)
    events = [e for e in await _events(response, 4) if e["type"] != "BOOKMARK"]
    while len(events) < 3:
        events += [e for e in await _events(response, 1) if e["type"] != "BOOKMARK"]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    bookmark = next(e for e in await _events(response, 3) if e["type"] == "BOOKMARK")
    assert bookmark["object"]["metadata"]["resourceVersion"]
    response.close()


async def test_watch_initial_events_and_timeout(api: TestClient[Any, Any]) -> None:
    await api.post(VMS, json=_vm("i"), headers=AUTH)
    response = await api.get(
        f"{VMS}?watch=1&timeoutSeconds=1",
        headers={**AUTH, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    [event] = await _events(response, 1)
    assert event["type"] == "ADDED"
    assert event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][0] == "i"
    assert await asyncio.wait_for(response.content.readline(), timeout=5) == b""
