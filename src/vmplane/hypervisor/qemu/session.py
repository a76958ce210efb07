"""One QMP connection to one QEMU, with its events pumped into a callback.

QEMU's QMP socket serves a single client, so the driver holds exactly one ``QMPClient`` per machine
and every command and event goes through it. The client's default ``events`` queue is unbounded and
cannot be unregistered: a pump task consumes it for the life of the connection and hands each event
to ``on_event``, so nothing accumulates. A second task watches the connection state and calls
``on_lost`` when the connection drops (QEMU exited, or closed the socket).

Connection failures surface as ``QmpUnavailableError``; command failures keep ``qemu.qmp``'s
``ExecuteError`` so the driver can read ``error_class``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecInterruptedError, Message, QMPClient, Runstate, StateError

from vmplane.hypervisor.base import HypervisorError

__all__ = ["QmpSession", "QmpUnavailableError"]

log = logging.getLogger(__name__)

#: How long a single command may take before the machine counts as unresponsive.
COMMAND_TIMEOUT = 30.0
_RETRY_INTERVAL = 0.005


class QmpUnavailableError(HypervisorError):
    """The QMP connection could not be made, or was lost, or QEMU did not answer in time."""


class QmpSession:
    def __init__(
        self,
        name: str,
        socket: Path,
        *,
        on_event: Callable[[Message], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.name = name
        self.socket = socket
        self._on_event = on_event
        self._on_lost = on_lost
        self._client = QMPClient(name)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def connect(self, *, timeout: float, alive: Callable[[], bool]) -> None:
        """Connect, retrying while the socket does not accept yet and the process is alive.

        The timeout also covers a socket that accepts but never greets: that is what a QEMU whose QMP
        socket already has a client looks like.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if not self.socket.exists() and alive() and remaining > 0:
                await asyncio.sleep(_RETRY_INTERVAL)  # QEMU has not bound it yet
                continue
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    await self._client.connect(str(self.socket))
                break
            except ConnectError as err:
                if not alive():
                    raise QmpUnavailableError(f"{self.name}: QEMU exited before QMP was ready") from err
                if loop.time() >= deadline:
                    raise QmpUnavailableError(
                        f"{self.name}: QMP not ready after {timeout:.1f}s: {err}"
                    ) from err
                await asyncio.sleep(_RETRY_INTERVAL)
            except TimeoutError as err:
                await self._quiet_disconnect()
                raise QmpUnavailableError(
                    f"{self.name}: QMP did not answer within {timeout:.1f}s (is another client connected?)"
                ) from err
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"qmp-events-{self.name}"),
            asyncio.create_task(self._watch(), name=f"qmp-watch-{self.name}"),
        ]

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run a command; ``ExecuteError`` when QEMU refuses it, ``QmpUnavailableError`` when unreachable."""
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return await self._client.execute(command, arguments)
        except (ExecInterruptedError, StateError, ConnectionError, EOFError) as err:
            raise QmpUnavailableError(f"{self.name}: QMP connection lost during {command}") from err
        except TimeoutError as err:
            raise QmpUnavailableError(
                f"{self.name}: {command} got no answer in {COMMAND_TIMEOUT:.0f}s"
            ) from err

    @property
    def connected(self) -> bool:
        return self._client.runstate == Runstate.RUNNING

    async def _pump(self) -> None:
        async for event in self._client.events:
            try:
                self._on_event(event)
            except Exception:
                log.exception("%s: handling QMP event %s failed", self.name, event.get("event"))

    async def _watch(self) -> None:
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()
        if not self._closing:
            self._on_lost()

    async def _quiet_disconnect(self) -> None:
        # disconnect() re-raises whatever ended the connection (EOFError when QEMU hung up).
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    async def close(self) -> None:
        """Disconnect (QEMU keeps running) and stop the pump and watcher; idempotent."""
        if self._closing:
            return
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await self._quiet_disconnect()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._client.events.clear()
