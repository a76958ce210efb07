"""A client of the QEMU guest agent (QGA) on a guest's ``org.qemu.guest_agent.0`` channel.

QGA speaks QMP's wire format without its greeting and capabilities negotiation, so this is
``qemu.qmp``'s ``QMPClient`` with ``await_greeting`` and ``negotiate`` off (the settings its docs give
for QGA), plus what QGA adds and what a hostile guest calls for:

* ``guest-sync-delimited`` resynchronises the stream after connecting (the channel keeps whatever an
  earlier client left half-read): the request goes after a ``0xFF`` byte and the agent puts ``0xFF``
  before its answer, so ``_do_recv`` drops everything up to the last ``0xFF`` of a line.
* Every read is bounded: a line longer than ``MAX_MESSAGE`` bytes ends the connection (qemu.qmp's
  ``readbuflen``), and every command has a deadline (``timeout``); a guest that answers garbage or
  nothing costs one reconnect, never a hung agent.
* Each request ends with a newline, which qemu-ga's JSON parser skips as whitespace.
* Request ids are unique across connections (qemu.qmp numbers each client's from ``__qmp#00000``):
  a slow guest's answer to an earlier connection's sync arrives on the next connection, and with a
  reused id it would be taken for that connection's sync and fail it, and the next, and so on.
* QGA sends no events, so an ``event`` from the guest is dropped instead of queued (qemu.qmp's event
  queue is unbounded); replies to ids never issued are dropped by qemu.qmp itself.

The channel's socket serves one client at a time, so one ``GuestAgent`` per machine holds it, and
every caller (the status poll, the ``guestosinfo`` queries) goes through it, one command at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path

from qemu.qmp import ExecuteError, QMPClient, QMPError
from qemu.qmp.message import Message

__all__ = ["MAX_MESSAGE", "GuestAgent", "GuestAgentError", "QgaClient"]

#: The longest line a guest may answer (bytes); the fsinfo of a guest with many mounts fits easily.
MAX_MESSAGE = 1 << 20
_SYNC_ID_LIMIT = 1 << 31
_DELIMITER = b"\xff"

log = logging.getLogger(__name__)


class GuestAgentError(Exception):
    """The guest agent did not answer (not running, silent, garbage, too large) or refused."""


class QgaClient(QMPClient):
    """``QMPClient`` for QGA: no greeting, no negotiation, ``0xFF`` delimiters, bounded lines."""

    def __init__(self, name: str, *, max_message: int = MAX_MESSAGE) -> None:
        super().__init__(name, readbuflen=max_message)
        self._id_prefix = secrets.token_hex(4)
        self.await_greeting = False
        self.negotiate = False
        # A guest can make qemu.qmp log each message it cannot route; that is the guest's noise.
        self.logger.setLevel(logging.CRITICAL)

    def _get_exec_id(self) -> str:
        return f"{super()._get_exec_id()}-{self._id_prefix}"

    async def _do_recv(self) -> Message:
        while True:
            line = await self._readline()
            payload = line.rpartition(_DELIMITER)[2]
            if payload.strip():
                return Message(payload, eager=True)
            if not line:  # at EOF with nothing left
                raise EOFError

    def _do_send(self, msg: Message) -> None:
        assert self._writer is not None
        if msg.get("execute") == "guest-sync-delimited":
            self._writer.write(_DELIMITER)
        # qemu.qmp sends bare JSON; a newline after it (whitespace to QGA's streaming parser) lets a
        # line-reading agent, as the test guest's, take one request per line.
        self._writer.write(bytes(msg) + b"\n")

    async def _on_message(self, msg: Message) -> None:
        if "event" in msg:
            return
        await super()._on_message(msg)


class GuestAgent:
    """One machine's guest agent over the unix socket ``path``, connected on demand and resynchronised
    (``guest-sync-delimited``) on each connection; any failure drops the connection."""

    def __init__(
        self, name: str, path: Path, *, timeout: float = 2.0, max_message: int = MAX_MESSAGE
    ) -> None:
        self._name = name
        self._path = path
        self._timeout = timeout
        self._max_message = max_message
        self._client: QgaClient | None = None
        self._lock = asyncio.Lock()

    async def execute(
        self, command: str, arguments: dict[str, object] | None = None, *, timeout: float | None = None
    ) -> object:
        """The ``return`` of ``command``; GuestAgentError when the agent does not answer within
        ``timeout`` seconds (the agent's default when None)."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout if timeout is None else timeout):
                    client = await self._connected()
                    return await client.execute(command, arguments)
            except ExecuteError as err:  # the agent answered, with an error: the connection is fine
                raise GuestAgentError(f"{self._name}: {command}: {err}") from err
            except (TimeoutError, QMPError, OSError, EOFError, ValueError) as err:
                await self._drop()
                reason = (
                    "no answer in time" if isinstance(err, TimeoutError) else str(err) or type(err).__name__
                )
                raise GuestAgentError(f"{self._name}: guest agent: {reason}") from err

    async def _connected(self) -> QgaClient:
        if self._client is not None:
            return self._client
        client = QgaClient(self._name, max_message=self._max_message)
        try:
            await client.connect(str(self._path))
            sync_id = secrets.randbelow(_SYNC_ID_LIMIT)
            answer = await client.execute("guest-sync-delimited", {"id": sync_id})
            if answer != sync_id:
                raise GuestAgentError(f"{self._name}: guest agent: out of sync ({answer!r} != {sync_id})")
        except BaseException:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise
        self._client = client
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def close(self) -> None:
        """Disconnect (a later ``execute`` connects again)."""
        async with self._lock:
            await self._drop()
