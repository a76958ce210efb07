"""AgentWatch against a scripted guest agent on a real unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from vmplane.hypervisor.guest_info import GuestInterface
from vmplane.hypervisor.qemu.agent_watch import AgentWatch

pytestmark = pytest.mark.timeout(30)

ANSWERS: dict[str, object] = {
    "guest-ping": {},
    "guest-network-get-interfaces": [
        {
            "name": "eth0",
            "hardware-address": "02:00:00:00:00:01",
            "ip-addresses": [{"ip-address": "10.0.2.15"}],
        }
    ],
    "guest-get-users": [{"user": "root", "login-time": 1.5}],
}


CONNECTIONS: list[asyncio.StreamWriter] = []
#: Seconds the scripted agent takes over each command, by command (a busy guest's slow answers).
DELAYS: dict[str, float] = {}


async def _agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    CONNECTIONS.append(writer)
    with contextlib.suppress(ConnectionError):
        while line := await reader.readline():
            request = json.loads(line.rpartition(b"\xff")[2])
            command, rid = request["execute"], request["id"]
            await asyncio.sleep(DELAYS.get(command, 0.0))
            if command == "guest-sync-delimited":
                writer.write(
                    b"\xff" + json.dumps({"return": request["arguments"]["id"], "id": rid}).encode() + b"\n"
                )
            elif command in ANSWERS:
                writer.write(json.dumps({"return": ANSWERS[command], "id": rid}).encode() + b"\n")
            else:
                error = {"class": "CommandNotFound", "desc": command}
                writer.write(json.dumps({"error": error, "id": rid}).encode() + b"\n")
            await writer.drain()
    writer.close()


class Changes:
    """``on_change`` that wakes a test waiting for the watch to reach a state."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.event.set()

    async def wait(self, watch: AgentWatch, *, connected: bool) -> None:
        async with asyncio.timeout(5.0):
            while watch.connected is not connected:
                self.event.clear()
                await self.event.wait()


async def test_an_answering_agent_is_connected_with_its_interfaces_and_one_change_is_reported(
    tmp_path: Path,
) -> None:
    server = await asyncio.start_unix_server(_agent, tmp_path / "ga.sock")
    changes = Changes()
    watch = AgentWatch("vm", tmp_path / "ga.sock", on_change=changes, interval=0.05).start()
    try:
        await changes.wait(watch, connected=True)
        await asyncio.sleep(0.3)  # several more polls, all alike
        assert (watch.interfaces, changes.names) == (
            (GuestInterface(name="eth0", mac="02:00:00:00:00:01", ip_addresses=("10.0.2.15",)),),
            ["vm"],
        )
    finally:
        await watch.close()
        server.close()
        await server.wait_closed()


async def test_an_agent_that_goes_away_is_disconnected(tmp_path: Path) -> None:
    server = await asyncio.start_unix_server(_agent, tmp_path / "ga.sock")
    changes = Changes()
    watch = AgentWatch("vm", tmp_path / "ga.sock", on_change=changes, interval=0.05, timeout=0.5).start()
    try:
        await changes.wait(watch, connected=True)
        server.close()
        for connection in CONNECTIONS:
            connection.close()
        await server.wait_closed()
        await changes.wait(watch, connected=False)
        assert watch.interfaces == ()
    finally:
        await watch.close()


async def test_an_agent_too_slow_to_list_its_interfaces_is_still_connected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DELAYS, "guest-network-get-interfaces", 1.0)
    server = await asyncio.start_unix_server(_agent, tmp_path / "ga.sock")
    changes = Changes()
    watch = AgentWatch(
        "vm", tmp_path / "ga.sock", on_change=changes, interval=0.05, timeout=0.5, query_timeout=0.2
    ).start()
    try:
        await changes.wait(watch, connected=True)
        assert watch.interfaces == ()
    finally:
        await watch.close()
        server.close()
        await server.wait_closed()


async def test_guestosinfo_leaves_out_what_the_agent_lacks(tmp_path: Path) -> None:
    server = await asyncio.start_unix_server(_agent, tmp_path / "ga.sock")
    watch = AgentWatch("vm", tmp_path / "ga.sock", on_change=lambda name: None, interval=60)
    try:
        assert await watch.query("guestosinfo") == {
            "os": {},
            "userList": [{"userName": "root", "loginTime": 1.5}],
        }
    finally:
        await watch.close()
        server.close()
        await server.wait_closed()
