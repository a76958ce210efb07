"""Websocket subresources that carry a running guest's byte streams: ``console`` (its serial port),
``vnc`` (its display, RFB) and ``portforward/{port}`` (a TCP connection to the guest), as upstream's
``virtualmachineinstances/{name}/console|vnc|portforward`` (and ``virtualmachines/{name}/portforward``).

Upstream's virt-api proxies to virt-handler, which bridges to the guest's sockets; here the API bridges
to the streams a ``GuestStreams`` opens (``agent.console.QemuGuestStreams``: the unix sockets in the
VM's run directory; a forward of QEMU's user network for a port). Frames are binary, with upstream's
subprotocol ``plain.kubevirt.io``; what the client sends goes to the guest unchanged. The console and
VNC take one client at a time (QEMU's socket chardev and VNC server serve one), so a second one is
refused with 409 while the first is connected; each port-forward connection is its own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

from aiohttp import WSMsgType, web

from vmplane.api import names
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext
from vmplane.store.base import NotFoundError

__all__ = [
    "PORT_FORWARD_PATHS",
    "SUBPROTOCOL",
    "VNC_PATH",
    "Channel",
    "GuestStreams",
    "StreamBridge",
    "add_stream_routes",
    "wants_websocket",
]

_BASE = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}"
VNC_PATH = _BASE + "/virtualmachineinstances/{name}/vnc"
PORT_FORWARD_PATHS = tuple(
    f"{_BASE}/{kind}/{{name}}/portforward/{{port}}{tail}"
    for kind in ("virtualmachineinstances", "virtualmachines")
    for tail in ("", "/{protocol}")
)
SUBPROTOCOL = "plain.kubevirt.io"
Channel = Literal["serial", "vnc"]
_CHUNK = 64 * 1024


class GuestStreams(Protocol):
    """Opens a byte stream to a running guest's serial port, VNC server or a TCP port of its network."""

    def connect(
        self, namespace: str, name: str, channel: Channel | int
    ) -> AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """A connection to the channel (an int: that guest TCP port), closed on exit; OSError when the
        guest cannot be reached there (not running, gone, nothing listening)."""
        ...


def wants_websocket(request: web.Request) -> bool:
    """The request asks to upgrade to a websocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


class StreamBridge:
    """Bridges websocket clients to guest streams, one client per guest channel."""

    def __init__(self, ctx: ApiContext, streams: GuestStreams) -> None:
        self._ctx = ctx
        self._streams = streams
        self._connected: set[tuple[str, str, Channel] | None] = set()
        vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        assert vmi_type is not None
        self._vmi_type = vmi_type

    async def handle(self, request: web.Request, channel: Channel | int) -> web.StreamResponse:
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
        shown = f"port {channel}" if isinstance(channel, int) else channel
        exclusive = (namespace, name, channel) if isinstance(channel, str) else None
        if exclusive in self._connected:
            raise st.ApiError(code=409, reason="Conflict", message=f"a {shown} client is already connected")
        async with contextlib.AsyncExitStack() as stack:
            try:
                reader, writer = await stack.enter_async_context(
                    self._streams.connect(namespace, name, channel)
                )
            except OSError as err:
                message = f"cannot reach the guest's {shown}: {err.strerror or err}"
                raise st.ApiError(code=409, reason="Conflict", message=message) from err
            if exclusive is not None:
                self._connected.add(exclusive)
                stack.callback(self._connected.discard, exclusive)
            return await _relay(request, reader, writer)
        raise AssertionError("unreachable: the exit stack swallows no exception")


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


def _port(request: web.Request) -> int:
    raw = request.match_info["port"]
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise st.bad_request(f"port: {raw!r} is not a TCP port (1-65535)")
    protocol = request.match_info.get("protocol", "tcp")
    if protocol != "tcp":
        raise st.bad_request(f"protocol: {protocol!r} is not supported (only tcp)")
    return int(raw)


def add_stream_routes(app: web.Application, ctx: ApiContext, bridge: StreamBridge) -> None:
    """Route ``vnc`` and ``portforward`` (the console shares the log's ``console`` route)."""

    async def vnc(request: web.Request) -> web.StreamResponse:
        return await bridge.handle(request, "vnc")

    async def port_forward(request: web.Request) -> web.StreamResponse:
        # A VM's guest is the VMI of its name, as upstream's VM portforward resolves it.
        return await bridge.handle(request, _port(request))

    app.router.add_get(VNC_PATH, vnc)
    for path in PORT_FORWARD_PATHS:
        app.router.add_get(path, port_forward)
