"""The client ends of the guest stream subresources: an interactive serial console and a VNC proxy.

Both open upstream's websocket (``virtualmachineinstances/{name}/console|vnc``, subprotocol
``plain.kubevirt.io``, binary frames) with the kubeconfig's server, CA and token, through aiohttp's
websocket client. The console puts a terminal in raw mode and leaves on ``Ctrl-]`` as virtctl does;
the VNC proxy listens on 127.0.0.1 only (a port the user chose, or any free one) and opens one
websocket per viewer connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import termios
import tty
from collections.abc import Callable

import aiohttp

from vmplane.cli.client import ApiError, ClientConfig

__all__ = ["ESCAPE", "console_session", "local_proxy", "stdio_tunnel", "stream_path"]

#: ``Ctrl-]``, virtctl's escape: it ends the console session and is never sent to the guest.
ESCAPE = 0x1D
_SUBPROTOCOL = "plain.kubevirt.io"
_CHUNK = 64 * 1024


def stream_path(
    config: ClientConfig, name: str, channel: str, *, kind: str = "virtualmachineinstances"
) -> str:
    """The URL of a ``console``, ``vnc`` or ``portforward/PORT`` subresource of a VMI (or VM)."""
    return (
        f"{config.server}/apis/subresources.kubevirt.io/v1/namespaces/{config.namespace}"
        f"/{kind}/{name}/{channel}"
    )


def _ssl(config: ClientConfig) -> ssl.SSLContext | bool:
    if config.ca_pem is None:
        return True
    return ssl.create_default_context(cadata=config.ca_pem.decode())


async def _connect(
    session: aiohttp.ClientSession, config: ClientConfig, url: str
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    try:
        return await session.ws_connect(url, protocols=(_SUBPROTOCOL,), headers=headers, ssl=_ssl(config))
    except aiohttp.WSServerHandshakeError as err:
        raise ApiError(err.status, f"{url.rsplit('/', 1)[1]}: {err.status} {err.message}") from err
    except aiohttp.ClientError as err:
        raise ApiError(0, f"cannot reach {config.server}: {err}") from err


async def console_session(config: ClientConfig, name: str) -> None:
    """Relay stdin to the guest's serial port and its output to stdout until ``Ctrl-]`` or the end."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    out = sys.stdout.buffer
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    async with aiohttp.ClientSession() as session:
        ws = await _connect(session, config, stream_path(config, name, "console"))
        typed: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(fd, lambda: typed.put_nowait(os.read(fd, _CHUNK)))
        if saved is not None:
            tty.setraw(fd)
            print("Successfully connected to the console. Press Ctrl+] to exit.\r", file=sys.stderr)

        async def keyboard() -> None:
            while chunk := await typed.get():
                escape = chunk.find(bytes([ESCAPE]))
                if escape >= 0:
                    if escape:
                        await ws.send_bytes(chunk[:escape])
                    return
                await ws.send_bytes(chunk)
            await asyncio.Event().wait()  # stdin ended: keep showing the guest until Ctrl-C

        sender = asyncio.create_task(keyboard())
        try:
            receiver = asyncio.create_task(_print_frames(ws, out.write, out.flush))
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            sender.cancel()
            await ws.close()


async def _print_frames(
    ws: aiohttp.ClientWebSocketResponse, write: Callable[[bytes], object], flush: Callable[[], object]
) -> None:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.BINARY:
            write(message.data)
            flush()


async def stdio_tunnel(config: ClientConfig, url: str) -> None:
    """Relay stdin and stdout to the stream at ``url`` until either ends (ssh's ProxyCommand)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    out = sys.stdout.buffer
    async with aiohttp.ClientSession() as session:
        ws = await _connect(session, config, url)
        typed: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(fd, lambda: typed.put_nowait(os.read(fd, _CHUNK)))

        async def forward() -> None:
            while chunk := await typed.get():
                await ws.send_bytes(chunk)
            await asyncio.Event().wait()  # stdin ended: the answer may still be coming

        sender = asyncio.create_task(forward())
        try:
            receiver = asyncio.create_task(_print_frames(ws, out.write, out.flush))
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            sender.cancel()
            await ws.close()


async def local_proxy(
    config: ClientConfig, url: str, *, address: str, port: int, ready: Callable[[int], None]
) -> None:
    """Relay each connection to ``address:port`` (0: any free port, passed to ``ready``) to its own
    stream at ``url``, until cancelled."""
    async with aiohttp.ClientSession() as session:

        async def viewer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                ws = await _connect(session, config, url)
            except ApiError as err:
                print(f"error: {err}", file=sys.stderr)
                writer.close()
                return

            async def upstream() -> None:
                while chunk := await reader.read(_CHUNK):
                    await ws.send_bytes(chunk)

            async def downstream() -> None:
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.BINARY:
                        writer.write(message.data)
                        await writer.drain()

            tasks = {asyncio.create_task(upstream()), asyncio.create_task(downstream())}
            with contextlib.suppress(ConnectionError):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await ws.close()
            writer.close()

        server = await asyncio.start_server(viewer, address, port)
        async with server:
            ready(server.sockets[0].getsockname()[1])
            await server.serve_forever()
