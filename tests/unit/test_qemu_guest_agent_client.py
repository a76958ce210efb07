"""The guest agent client against real unix sockets served by scripted guests, honest and hostile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from vmplane.hypervisor.qemu.guest_agent import GuestAgent, GuestAgentError

pytestmark = pytest.mark.timeout(30)

Reply = Callable[[dict[str, object]], bytes | None]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _request(line: bytes) -> dict[str, object]:
    loaded = json.loads(line.rpartition(b"\xff")[2])
    assert isinstance(loaded, dict)
    return loaded


def honest(answers: dict[str, object]) -> Reply:
    """A guest agent that answers as qemu-ga does (the sync with 0xFF first, ids echoed)."""

    def reply(request: dict[str, object]) -> bytes:
        command, rid = request["execute"], request.get("id")
        if command == "guest-sync-delimited":
            args = request["arguments"]
            assert isinstance(args, dict)
            return b"\xff" + json.dumps({"return": args["id"], "id": rid}).encode() + b"\n"
        return json.dumps({"return": answers[str(command)], "id": rid}).encode() + b"\n"

    return reply


def serve_lines(reply: Reply) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                answer = reply(_request(line))
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        writer.close()

    return handle


@contextlib.asynccontextmanager
async def guest(tmp_path: Path, handle: Handler) -> AsyncIterator[Path]:
    path = tmp_path / "guest-agent.sock"
    server = await asyncio.start_unix_server(handle, path)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()


async def ping(tmp_path: Path, reply: Reply) -> object:
    """What ``guest-ping`` returns through a guest that answers with ``reply``."""
    async with guest(tmp_path, serve_lines(reply)) as path:
        agent = GuestAgent("vm", path)
        try:
            return await agent.execute("guest-ping")
        finally:
            await agent.close()


async def test_an_honest_agent_answers_after_the_delimited_sync(tmp_path: Path) -> None:
    async with guest(tmp_path, serve_lines(honest({"guest-get-host-name": {"host-name": "g"}}))) as path:
        agent = GuestAgent("vm", path)
        try:
            assert await agent.execute("guest-get-host-name") == {"host-name": "g"}
        finally:
            await agent.close()


async def test_an_agent_error_is_a_guest_agent_error_naming_the_command(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        if request["execute"] == "guest-sync-delimited":
            return honest({})(request) or b""
        error = {"class": "CommandNotFound", "desc": "The command guest-get-users has not been found"}
        return json.dumps({"error": error, "id": request["id"]}).encode() + b"\n"

    async with guest(tmp_path, serve_lines(reply)) as path:
        agent = GuestAgent("vm", path)
        try:
            with pytest.raises(GuestAgentError, match="guest-get-users"):
                await agent.execute("guest-get-users")
        finally:
            await agent.close()


async def test_a_silent_guest_fails_within_the_timeout(tmp_path: Path) -> None:
    async with guest(tmp_path, serve_lines(lambda request: None)) as path:
        agent = GuestAgent("vm", path, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(GuestAgentError, match="no answer in time"):
            await agent.execute("guest-ping")
        assert time.monotonic() - started < 2.0
        await agent.close()


async def test_an_oversized_answer_ends_the_connection_with_an_error(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        if request["execute"] == "guest-sync-delimited":
            return honest({})(request) or b""
        return b'{"return": "' + b"x" * 100_000 + b'"}\n'

    async with guest(tmp_path, serve_lines(reply)) as path:
        agent = GuestAgent("vm", path, max_message=4096)
        with pytest.raises(GuestAgentError):
            await agent.execute("guest-get-osinfo")
        await agent.close()


async def test_an_endless_line_without_newline_is_cut_at_the_bound(tmp_path: Path) -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readline()
            for _ in range(64):
                writer.write(b"y" * 4096)
                await writer.drain()
        writer.close()

    async with guest(tmp_path, flood) as path:
        agent = GuestAgent("vm", path, max_message=4096, timeout=5.0)
        with pytest.raises(GuestAgentError):
            await agent.execute("guest-ping")
        await agent.close()


async def test_garbage_is_an_error_and_not_a_crash(tmp_path: Path) -> None:
    async with guest(tmp_path, serve_lines(lambda request: b"\x00\x01 not json {{{\n")) as path:
        agent = GuestAgent("vm", path, timeout=2.0)
        with pytest.raises(GuestAgentError):
            await agent.execute("guest-ping")
        await agent.close()


async def test_a_sync_answered_with_another_id_is_out_of_sync(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        return b"\xff" + json.dumps({"return": -1, "id": request["id"]}).encode() + b"\n"

    async with guest(tmp_path, serve_lines(reply)) as path:
        agent = GuestAgent("vm", path)
        with pytest.raises(GuestAgentError, match="out of sync"):
            await agent.execute("guest-ping")
        await agent.close()


async def test_an_earlier_connections_late_sync_answer_is_not_taken_for_this_ones(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        answer = honest({"guest-ping": {}})(request) or b""
        if request["execute"] != "guest-sync-delimited":
            return answer
        # What a slow guest answered the first request of the connection before, with its id.
        return b"\xff" + json.dumps({"return": 7, "id": "__qmp#00000"}).encode() + b"\n" + answer

    assert await ping(tmp_path, reply) == {}


async def test_stale_bytes_before_the_delimiter_are_skipped(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        answer = honest({"guest-ping": {}})(request) or b""
        return (
            b'{"return": "half a stale ans' + answer
            if request["execute"] == "guest-sync-delimited"
            else answer
        )

    assert await ping(tmp_path, reply) == {}


async def test_events_from_the_guest_are_dropped_not_queued(tmp_path: Path) -> None:
    def reply(request: dict[str, object]) -> bytes:
        answer = honest({"guest-ping": {}})(request) or b""
        return b'{"event": "SPAM", "data": {}}\n' * 100 + answer

    assert await ping(tmp_path, reply) == {}


async def test_no_socket_is_an_error(tmp_path: Path) -> None:
    agent = GuestAgent("vm", tmp_path / "absent.sock", timeout=1.0)
    with pytest.raises(GuestAgentError):
        await agent.execute("guest-ping")
    await agent.close()
