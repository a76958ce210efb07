"""A VMI created with its first status: kept from the control plane's controllers, dropped from anyone
else (in-process API over a MemoryStore, one token per identity)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.authz import Role, User, user_for
from vmplane.apiserver.kinds import default_registry
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
VMIS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
IDENTITIES = {"Bearer admin": user_for(Role.ADMIN), "Bearer controllers": user_for(Role.CONTROLLERS)}
ADMIN = {"Authorization": "Bearer admin"}
CONTROLLERS = {"Authorization": "Bearer controllers"}
FIRST_STATUS = {"phase": "Pending", "virtualMachineRevisionName": "revision-start-vm-u-1"}


def _authenticate(header: str | None) -> User | None:
    return IDENTITIES.get(header or "")


@pytest.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    store = MemoryStore(history=20)
    await bootstrap(store)
    app = create_app(store=store, registry=default_registry(), authenticate=_authenticate)
    async with TestClient(TestServer(app)) as client:
        yield client
    await store.close()


def _vmi(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name},
        "spec": {"domain": {"devices": {}}},
        "status": FIRST_STATUS,
    }


async def _create(api: TestClient[Any, Any], path: str, body: dict[str, Any], who: dict[str, str]) -> Any:
    response = await api.post(path, json=body, headers={**who, "User-Agent": "creator/1"})
    assert response.status == 201, await response.text()
    return await response.json()


async def test_a_vmi_created_by_the_controllers_keeps_its_first_status(api: TestClient[Any, Any]) -> None:
    created = await _create(api, VMIS, _vmi("kept"), CONTROLLERS)
    assert created["status"] == FIRST_STATUS
    stored = await (await api.get(f"{VMIS}/kept", headers=ADMIN)).json()
    assert stored["status"] == FIRST_STATUS


async def test_the_kept_status_is_owned_as_a_status_write_would_own_it(api: TestClient[Any, Any]) -> None:
    created = await _create(api, VMIS, _vmi("owned"), CONTROLLERS)
    entries = {entry.get("subresource", ""): entry for entry in created["metadata"]["managedFields"]}
    assert set(entries) == {"", "status"}
    assert entries["status"]["manager"] == "creator"
    assert set(entries["status"]["fieldsV1"]) == {"f:status"}
    assert "f:status" not in entries[""]["fieldsV1"]


async def test_a_vmi_created_by_an_admin_has_its_status_dropped(api: TestClient[Any, Any]) -> None:
    created = await _create(api, VMIS, _vmi("exported"), ADMIN)
    assert "status" not in created


async def test_a_vm_created_by_the_controllers_still_has_its_status_dropped(
    api: TestClient[Any, Any],
) -> None:
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
        "status": {"printableStatus": "Running"},
    }
    created = await _create(api, VMS, vm, CONTROLLERS)
    assert "status" not in created
