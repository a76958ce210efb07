"""``GET .../virtualmachineinstances/{name}/console``: a VMI's serial console, or its log.

A websocket request gets KubeVirt's interactive console (``apiserver.streams``). Any other gets the
log the guest's serial port wrote, as ``kubectl logs`` serves a container's: ``text/plain``, the
whole log or its last ``tailLines`` lines, and with ``follow=true`` a chunked stream of what the
guest writes next until the VMI ends (is deleted, replaced by a new VMI, or reaches
Succeeded/Failed) or the client goes away.

The log file is the node agent's (``ConsoleSource`` says where it is); growth is polled every
``POLL_INTERVAL`` seconds, as ``tail -f`` does where inotify is not at hand. An API server that keeps
no guests (``vmplane apiserver``) forwards the request to the node agent of the VMI's node, as
kube-apiserver forwards ``kubectl logs`` to a kubelet (``apiserver.node_console``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from aiohttp import web

from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext, query_bool
from vmplane.apiserver.node_console import NodeConsoleProxy
from vmplane.apiserver.registry import ResourceType
from vmplane.apiserver.streams import StreamBridge, wants_websocket
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["CONSOLE_PATH", "ConsoleLog", "ConsoleSource", "VmiLookup", "add_console_routes"]

CONSOLE_PATH = (
    "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
)
POLL_INTERVAL = 0.2
_CHUNK = 64 * 1024
_FINAL_PHASES = ("Succeeded", "Failed")


class ConsoleSource(Protocol):
    """Where this host keeps a VMI's console log."""

    def path(self, namespace: str, name: str) -> Path | None:
        """The log file, or None when the VMI's machine has none (yet)."""
        ...


def _tail_offset(file: BinaryIO, lines: int) -> int:
    """The offset where the last ``lines`` lines of ``file`` begin (a final unterminated line counts)."""
    end = file.seek(0, 2)
    if lines <= 0:
        return end
    position, found = end, 0
    while position > 0:
        step = min(_CHUNK, position)
        position -= step
        file.seek(position)
        block = file.read(step)
        for index in range(len(block) - 1, -1, -1):
            if block[index] == 0x0A and position + index != end - 1:
                found += 1
                if found == lines:
                    return position + index + 1
    return 0


def _tail_lines(request: web.Request) -> int | None:
    raw = request.query.get("tailLines")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as err:
        raise st.bad_request(f"tailLines: expected an integer, got {raw!r}") from err
    if value < 0:
        raise st.bad_request("tailLines: must be zero or more")
    return value


VmiLookup = Callable[[str, str], Awaitable[JsonObject | None]]


class ConsoleLog:
    """Serves the log ``source`` keeps of a VMI: all of it, its tail, or followed while the VMI lasts
    (``lookup`` re-reads the VMI to see it end)."""

    def __init__(self, source: ConsoleSource, lookup: VmiLookup) -> None:
        self._source = source
        self._lookup = lookup

    async def respond(self, request: web.Request, vmi: JsonObject) -> web.StreamResponse:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        tail = _tail_lines(request)
        if not query_bool(request.query.get("follow")):
            return web.Response(body=self._read(namespace, name, tail), content_type="text/plain")
        return await self._follow(request, vmi, tail)

    def _read(self, namespace: str, name: str, tail: int | None) -> bytes:
        path = self._source.path(namespace, name)
        if path is None:
            return b""
        try:
            with path.open("rb") as file:
                file.seek(_tail_offset(file, tail) if tail is not None else 0)
                return file.read()
        except FileNotFoundError:  # the machine's directory went away meanwhile
            return b""

    async def _ended(self, vmi: JsonObject) -> bool:
        meta = vmi["metadata"]
        now = await self._lookup(meta["namespace"], meta["name"])
        if now is None or now["metadata"].get("uid") != meta.get("uid"):
            return True
        return (now.get("status") or {}).get("phase") in _FINAL_PHASES

    async def _follow(self, request: web.Request, vmi: JsonObject, tail: int | None) -> web.StreamResponse:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        file: BinaryIO | None = None
        try:
            while True:
                if file is None:
                    path = self._source.path(namespace, name)
                    if path is not None:
                        with contextlib.suppress(FileNotFoundError):
                            file = path.open("rb")
                            file.seek(_tail_offset(file, tail) if tail is not None else 0)
                # Local reads of a slowly growing log: cheap enough for the event loop.
                chunk = file.read(_CHUNK) if file is not None else b""
                if chunk:
                    await response.write(chunk)
                    continue
                if await self._ended(vmi):
                    break
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            if file is not None:
                file.close()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


class _Console:
    """The API's route: the local log when this process keeps guests' logs, else the VMI's node's."""

    def __init__(
        self,
        ctx: ApiContext,
        source: ConsoleSource | None,
        proxy: NodeConsoleProxy | None,
        bridge: StreamBridge | None,
    ) -> None:
        self._ctx = ctx
        self._log = ConsoleLog(source, self._vmi) if source is not None else None
        self._proxy = proxy
        self._bridge = bridge
        vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        assert vmi_type is not None
        self._vmi_type: ResourceType = vmi_type

    async def _vmi(self, namespace: str, name: str) -> JsonObject | None:
        try:
            return await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError:
            return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._bridge is not None and wants_websocket(request):
            return await self._bridge.handle(request, "serial")  # upstream's interactive console
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        vmi = await self._vmi(namespace, name)
        if vmi is None:
            raise st.not_found(self._vmi_type, name)
        _tail_lines(request)  # a bad tailLines is this server's 400, wherever the log is
        if self._log is not None:
            return await self._log.respond(request, vmi)
        if self._proxy is not None:
            return await self._proxy.forward(request, self._ctx.store, vmi)
        raise st.ApiError(code=404, reason="NotFound", message="this host's hypervisor keeps no console logs")


def add_console_routes(
    app: web.Application,
    ctx: ApiContext,
    source: ConsoleSource | None,
    proxy: NodeConsoleProxy | None = None,
    bridge: StreamBridge | None = None,
) -> None:
    """Route ``GET .../virtualmachineinstances/{name}/console`` (register before catch-alls).

    ``source``: this process's guests' logs; without one, ``proxy`` fetches the log from the node
    agent the VMI runs on. With ``Upgrade: websocket`` and a ``bridge``: the interactive serial console.
    """
    app.router.add_get(CONSOLE_PATH, _Console(ctx, source, proxy, bridge).handle)
