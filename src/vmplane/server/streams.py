"""Websocket subresources that carry a running guest's byte streams: ``console`` (its serial port) and
``vnc`` (its display, RFB), as upstream's ``virtualmachineinstances/{name}/console|vnc``.

Upstream's virt-api proxies to virt-handler, which bridges to the guest's sockets; here the API bridges
to the streams a ``GuestStreams`` opens (``agent.console.QemuGuestStreams``: the unix sockets in the
VM's run directory). Frames are binary, with upstream's subprotocol ``plain.kubevirt.io``; what the
client sends goes to the guest unchanged. A guest stream takes one client at a time (QEMU's socket
chardev and VNC server serve one), so a second one is refused with 409 while the first is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal, Protocol

from aiohttp import WSMsgType, web

from vmplane.api import names
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.server import status as st
from vmplane.server.context import ApiContext
from vmplane.store.base import NotFoundError

__all__ = [
    "SUBPROTOCOL",
    "VNC_PATH",
    "Channel",
    "GuestStreams",
    "StreamBridge",
    "add_stream_routes",
    "wants_websocket",
]

VNC_PATH = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/vnc"
SUBPROTOCOL = "plain.kubevirt.io"
Channel = Literal["serial", "vnc"]
_CHUNK = 64 * 1024


class GuestStreams(Protocol):
    """Opens a byte stream to a running guest's serial port or VNC server on this host."""

    async def open(
        self, namespace: str, name: str, channel: Channel
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the channel; OSError when the guest has none (not running, or gone)."""
        ...


def wants_websocket(request: web.Request) -> bool:
    """The request asks to upgrade to a websocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


class StreamBridge:
    """Bridges websocket clients to guest streams, one client per guest channel."""

    def __init__(self, ctx: ApiContext, streams: GuestStreams) -> None:
        self._ctx = ctx
        self._streams = streams
        self._connected: set[tuple[str, str, Channel]] = set()
        vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        assert vmi_type is not None
        self._vmi_type = vmi_type

    async def handle(self, request: web.Request, channel: Channel) -> web.StreamResponse:
        """Check the VMI runs, connect to its ``channel`` and relay both ways until either side ends."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if names.dns1123_label_errors(namespace) or names.dns1123_subdomain_errors(name):
            raise st.not_found(self._vmi_type, name)  # no such name can exist in the store
        try:
            vmi = await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError as err:
            raise st.not_found(self._vmi_type, name) from err
        phase = (vmi.get("status") or {}).get("phase")
        if phase != "Running":
            message = (
                f"Unable to connect to VirtualMachineInstance because phase is {phase} instead of Running"
            )
            raise st.ApiError(code=409, reason="Conflict", message=message)
        if not wants_websocket(request):
            raise st.bad_request("this subresource is a websocket: send Upgrade: websocket")
        key = (namespace, name, channel)
        if key in self._connected:
            raise st.ApiError(code=409, reason="Conflict", message=f"a {channel} client is already connected")
        try:
            reader, writer = await self._streams.open(namespace, name, channel)
        except OSError as err:
            raise st.ApiError(
                code=409,
                reason="Conflict",
                message=f"cannot reach the guest's {channel}: {err.strerror or err}",
            ) from err
        self._connected.add(key)
        try:
            return await _relay(request, reader, writer)
        finally:
            self._connected.discard(key)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _relay(
    request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=30.0)
    await ws.prepare(request)

    async def guest_to_client() -> None:
        while chunk := await reader.read(_CHUNK):
            await ws.send_bytes(chunk)
        await ws.close()  # the guest side ended (QEMU stopped)

    outbound = asyncio.create_task(guest_to_client())
    try:
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                writer.write(message.data)
            elif message.type is WSMsgType.TEXT:
                writer.write(message.data.encode())
            else:
                continue
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the guest side went away while we wrote: the session is over
    finally:
        outbound.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await outbound
    return ws


def add_stream_routes(app: web.Application, ctx: ApiContext, bridge: StreamBridge) -> None:
    """Route ``GET .../virtualmachineinstances/{name}/vnc`` (the console shares ``console``'s route)."""

    async def vnc(request: web.Request) -> web.StreamResponse:
        return await bridge.handle(request, "vnc")

    app.router.add_get(VNC_PATH, vnc)
