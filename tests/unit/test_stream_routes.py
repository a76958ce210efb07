"""The console, vnc and portforward websocket routes in-process, over a MemoryStore and an echo stream.

``EchoStreams`` is a fake ``GuestStreams``: each connection is a local socket pair whose far end
echoes what it reads, so the tests see exactly what the bridge relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.console import add_console_routes
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.streams import StreamBridge, add_stream_routes
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
AUTH = {"Authorization": "Bearer t"}
BASE = "/apis/subresources.kubevirt.io/v1/namespaces/default"


class EchoStreams:
    """Fake GuestStreams: every channel echoes; ``opened`` records what was asked for."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str | int]] = []

    @contextlib.asynccontextmanager
    async def connect(
        self, namespace: str, name: str, channel: Any
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        self.opened.append((name, channel))
        near, far = socket.socketpair()
        far_reader, far_writer = await asyncio.open_connection(sock=far)

        async def echo() -> None:
            while data := await far_reader.read(1024):
                far_writer.write(data)
                await far_writer.drain()

        task = asyncio.create_task(echo())
        reader, writer = await asyncio.open_connection(sock=near)
        try:
            yield reader, writer
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for each in (writer, far_writer):
                each.close()
                with contextlib.suppress(OSError):
                    await each.wait_closed()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore(history=50)
    await bootstrap(memory)
    for name, phase in (("vm1", "Running"), ("booting", "Scheduled")):
        await memory.create(
            VIRTUAL_MACHINE_INSTANCES,
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {},
                "status": {"phase": phase},
            },
        )
    yield memory
    await memory.close()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[TestClient[Any, Any]]:
    def routes(app: web.Application, ctx: ApiContext) -> None:
        bridge = StreamBridge(ctx, EchoStreams())
        add_console_routes(app, ctx, None, bridge=bridge)
        add_stream_routes(app, ctx, bridge)

    app = create_app(store=store, registry=default_registry(), token="t", extra_routes=routes)
    test_client: TestClient[Any, Any] = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def _echoed(ws: aiohttp.ClientWebSocketResponse, data: bytes) -> bytes:
    await ws.send_bytes(data)
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.BINARY
    return bytes(message.data)


@pytest.mark.parametrize(
    "path",
    [
        "/virtualmachineinstances/vm1/console",
        "/virtualmachineinstances/vm1/vnc",
        "/virtualmachines/vm1/portforward/80",
    ],
    ids=["console", "vnc", "vm-portforward"],
)
async def test_a_websocket_relays_both_ways_with_upstreams_subprotocol(
    client: TestClient[Any, Any], path: str
) -> None:
    async with client.ws_connect(BASE + path, headers=AUTH, protocols=("plain.kubevirt.io",)) as ws:
        assert ws.protocol == "plain.kubevirt.io"
        assert await _echoed(ws, b"hello") == b"hello"


async def test_a_second_console_client_is_refused_while_the_first_is_connected(
    client: TestClient[Any, Any],
) -> None:
    path = BASE + "/virtualmachineinstances/vm1/console"
    async with client.ws_connect(path, headers=AUTH) as first:
        assert await _echoed(first, b"x") == b"x"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path, headers=AUTH)
        assert refused.value.status == 409
    async with client.ws_connect(path, headers=AUTH) as again:  # free once the first left
        assert await _echoed(again, b"y") == b"y"


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/virtualmachineinstances/vm1/portforward/http", 400, "port"),
        ("/virtualmachineinstances/vm1/portforward/70000", 400, "port"),
        ("/virtualmachineinstances/vm1/portforward/22/udp", 400, "protocol"),
        ("/virtualmachineinstances/booting/vnc", 409, "phase is Scheduled"),
        ("/virtualmachineinstances/nope/vnc", 404, "nope"),
    ],
    ids=["port-word", "port-range", "udp", "not-running", "missing"],
)
async def test_bad_stream_requests_get_a_status_naming_the_problem(
    client: TestClient[Any, Any], path: str, status: int, field: str
) -> None:
    response = await client.get(
        BASE + path, headers={**AUTH, "Upgrade": "websocket", "Connection": "Upgrade"}
    )
    body = await response.json()
    assert (response.status, field in body["message"]) == (status, True)


async def test_a_stream_route_without_a_websocket_upgrade_is_a_bad_request(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get(BASE + "/virtualmachineinstances/vm1/vnc", headers=AUTH)
    assert response.status == 400
