"""The console's session at the HTTP edge: sign-in, the cookie's attributes, CSRF on writes, assets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.authz import Role
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.tokens import TokenAuthenticator, create_token, revoke_token
from vmplane.apiserver.ui import SessionStore
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
TOKEN = "console-token"
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
VM = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachine",
    "metadata": {"name": "a"},
    "spec": {"runStrategy": "Halted", "template": {"spec": {}}},
}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    store = MemoryStore(history=20)
    await bootstrap(store)
    app = create_app(
        store=store, registry=default_registry(), token=TOKEN, sessions=SessionStore(lifetime=60, clock=clock)
    )
    async with TestClient(TestServer(app)) as client:
        yield client
    await store.close()


async def sign_in(api: TestClient[Any, Any]) -> tuple[dict[str, str], str]:
    """The Cookie header of a new session (the test client does not send Secure cookies over HTTP)."""
    response = await api.post("/ui/session", json={"token": TOKEN})
    assert response.status == 200
    body = await response.json()
    return {"Cookie": f"vmplane_session={response.cookies['vmplane_session'].value}"}, body["csrf"]


async def test_sign_in_sets_an_httponly_secure_samesite_strict_cookie(api: TestClient[Any, Any]) -> None:
    response = await api.post("/ui/session", json={"token": TOKEN})
    cookie = response.cookies["vmplane_session"]
    assert (cookie["httponly"], cookie["secure"], cookie["samesite"], cookie["path"]) == (
        True,
        True,
        "Strict",
        "/",
    )
    body = await response.json()
    assert (body["user"], body["canWrite"], body["canConsole"]) == ("admin", True, True)


async def test_a_wrong_token_is_a_401_status(api: TestClient[Any, Any]) -> None:
    response = await api.post("/ui/session", json={"token": "wrong"})
    assert response.status == 401
    assert (await response.json())["message"] == "Unauthorized"
    assert "vmplane_session" not in response.cookies


async def test_sign_in_from_a_form_is_refused(api: TestClient[Any, Any]) -> None:
    response = await api.post("/ui/session", data={"token": TOKEN})
    assert response.status == 415


async def test_the_cookie_authenticates_reads(api: TestClient[Any, Any]) -> None:
    cookie, _ = await sign_in(api)
    assert (await api.get(VMS, headers=cookie)).status == 200
    assert (await api.get(VMS)).status == 401


async def test_a_write_through_the_cookie_needs_the_csrf_token(api: TestClient[Any, Any]) -> None:
    cookie, csrf = await sign_in(api)
    forged = await api.post(VMS, json=VM, headers=cookie)
    assert forged.status == 403
    assert "CSRF" in (await forged.json())["message"]
    wrong = await api.post(VMS, json=VM, headers={**cookie, "X-CSRF-Token": "guess"})
    assert wrong.status == 403
    made = await api.post(VMS, json=VM, headers={**cookie, "X-CSRF-Token": csrf})
    assert made.status == 201


async def test_a_bearer_token_needs_no_csrf_token(api: TestClient[Any, Any]) -> None:
    response = await api.post(VMS, json=VM, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 201


async def test_an_expired_session_is_signed_out(api: TestClient[Any, Any], clock: Clock) -> None:
    cookie, _ = await sign_in(api)
    clock.now += 61
    assert (await api.get(VMS, headers=cookie)).status == 401
    assert (await api.get("/ui/session", headers=cookie)).status == 401


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(api: TestClient[Any, Any]) -> None:
    cookie, csrf = await sign_in(api)
    assert (await api.delete("/ui/session", headers=cookie)).status == 403
    assert (await api.delete("/ui/session", headers={**cookie, "X-CSRF-Token": csrf})).status == 200
    assert (await api.get(VMS, headers=cookie)).status == 401


async def test_the_page_is_served_with_a_strict_content_security_policy(api: TestClient[Any, Any]) -> None:
    response = await api.get("/ui/")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    script = await api.get("/ui/assets/app.js")
    assert script.headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("name", ["routes.py", "..%2Froutes.py", "sessions.py", "app.jsx"])
async def test_only_the_listed_assets_are_served(api: TestClient[Any, Any], name: str) -> None:
    response = await api.get(f"/ui/assets/{name}")
    assert response.status == 404
    assert (await response.json())["kind"] == "Status"


def test_the_session_store_keeps_at_most_its_capacity() -> None:
    sessions = SessionStore(capacity=2)
    first, second, third = (sessions.create(f"Bearer {n}") for n in range(3))
    assert sessions.get(first.id) is None
    assert sessions.get(second.id) == second
    assert sessions.get(third.id) == third


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"token": 5}', b'{"token": "  "}', b'{"token": "' + b"x" * 5000 + b'"}'],
    ids=["not-json", "a-list", "a-number", "blank", "too-long"],
)
async def test_a_malformed_sign_in_is_a_400_status(api: TestClient[Any, Any], body: bytes) -> None:
    response = await api.post("/ui/session", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    status = await response.json()
    assert status["kind"] == "Status"
    assert "token" in status["message"]


async def test_a_revoked_token_ends_its_sessions(tmp_path: Path) -> None:
    record, token = create_token(tmp_path, Role.VIEWER)
    store = MemoryStore(history=20)
    await bootstrap(store)
    app = create_app(
        store=store,
        registry=default_registry(),
        authenticate=TokenAuthenticator(tmp_path).authenticate,
        sessions=SessionStore(),
    )
    async with TestClient(TestServer(app)) as client:
        signed_in = await client.post("/ui/session", json={"token": token})
        assert (await signed_in.json())["canWrite"] is False
        cookie = {"Cookie": f"vmplane_session={signed_in.cookies['vmplane_session'].value}"}
        assert (await client.get(VMS, headers=cookie)).status == 200
        revoke_token(tmp_path, record.id)
        assert (await client.get(VMS, headers=cookie)).status == 401
        assert (await client.get("/ui/session", headers=cookie)).status == 401
    await store.close()
