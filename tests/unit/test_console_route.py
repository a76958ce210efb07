"""The ``virtualmachineinstances/{name}/console`` route in-process over a MemoryStore and a log file."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.apiserver.app import bootstrap, create_app
from vmplane.apiserver.console import _tail_offset, add_console_routes
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.kinds import default_registry
from vmplane.testing.memory_store import MemoryStore

pytestmark = pytest.mark.timeout(30)
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/{}/console"


class FileSource:
    def __init__(self, log: Path) -> None:
        self.log = log

    def path(self, namespace: str, name: str) -> Path | None:
        return self.log if name == "vm1" and self.log.exists() else None


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
    ],
    ids=["terminated", "unterminated-last", "more-than-there-are", "zero", "empty"],
)
def test_tail_offset(content: bytes, lines: int, expected: bytes) -> None:
    file = io.BytesIO(content)
    assert content[_tail_offset(file, lines) :] == expected


def test_tail_offset_across_blocks() -> None:
    content = b"".join(f"line {i:06d} {'x' * 100}\n".encode() for i in range(2000))
    file = io.BytesIO(content)
    assert content[_tail_offset(file, 1500) :].count(b"\n") == 1500


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore(history=50)
    await bootstrap(memory)
    await memory.create(
        VIRTUAL_MACHINE_INSTANCES,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm1", "namespace": "default"},
            "spec": {},
            "status": {"phase": "Running"},
        },
    )
    yield memory
    await memory.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "console.log"
    path.write_bytes(b"booting\nVMPLANE-STATUS one\nVMPLANE-STATUS two\n")
    return path


async def client_for(store: MemoryStore, source: FileSource | None) -> TestClient[Any, Any]:
    def routes(app: web.Application, ctx: ApiContext) -> None:
        add_console_routes(app, ctx, source)

    app = create_app(store=store, registry=default_registry(), token=TOKEN, extra_routes=routes)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_whole_log_and_tail(store: MemoryStore, log: Path) -> None:
    client = await client_for(store, FileSource(log))
    try:
        response = await client.get(CONSOLE.format("vm1"), headers=AUTH)
        assert (response.status, response.content_type) == (200, "text/plain")
        assert await response.read() == log.read_bytes()
        response = await client.get(CONSOLE.format("vm1") + "?tailLines=1", headers=AUTH)
        assert await response.read() == b"VMPLANE-STATUS two\n"
        response = await client.get(CONSOLE.format("vm1") + "?tailLines=x", headers=AUTH)
        assert response.status == 400
        response = await client.get(CONSOLE.format("vm1"))
        assert response.status == 401
    finally:
        await client.close()


async def test_missing_vmi_is_a_not_found_status(store: MemoryStore, log: Path) -> None:
    client = await client_for(store, FileSource(log))
    try:
        response = await client.get(CONSOLE.format("nope"), headers=AUTH)
        body = await response.json()
        assert (response.status, body["reason"], body["details"]["name"]) == (404, "NotFound", "nope")
    finally:
        await client.close()


async def test_without_console_logs_the_route_says_so(store: MemoryStore) -> None:
    client = await client_for(store, None)
    try:
        response = await client.get(CONSOLE.format("vm1"), headers=AUTH)
        assert response.status == 404
        assert "keeps no console logs" in (await response.json())["message"]
    finally:
        await client.close()


async def test_follow_streams_new_output_and_ends_with_the_vmi(store: MemoryStore, log: Path) -> None:
    client = await client_for(store, FileSource(log))
    try:
        response = await client.get(CONSOLE.format("vm1") + "?follow=true&tailLines=1", headers=AUTH)
        assert response.status == 200
        first = await asyncio.wait_for(response.content.readline(), 5)
        assert first == b"VMPLANE-STATUS two\n"
        with log.open("ab") as file:
            file.write(b"VMPLANE-STATUS three\n")
        assert await asyncio.wait_for(response.content.readline(), 5) == b"VMPLANE-STATUS three\n"
        with log.open("ab") as file:
            file.write(b"last words\n")
        vmi = await store.get(VIRTUAL_MACHINE_INSTANCES, "default", "vm1")
        await store.update(
            VIRTUAL_MACHINE_INSTANCES, {**vmi, "status": {"phase": "Failed"}}, subresource="status"
        )
        rest = await asyncio.wait_for(response.content.read(), 5)  # drained, then the stream ends
        assert rest == b"last words\n"
    finally:
        await client.close()
