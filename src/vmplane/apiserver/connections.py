"""Connection limits aiohttp does not have: a header read timeout and a cap on open connections.

Why by hand. aiohttp's keep-alive timeout (``keepalive_timeout``) closes a connection idle between
requests, but nothing bounds the wait for the *first* request's headers: a client sending one byte
every few seconds (slowloris) holds a connection, and its memory, for ever. Go's ``http.Server``
has ``ReadHeaderTimeout`` (kube-apiserver sets it); here :class:`GuardedProtocol` wraps aiohttp's
protocol, starts a timer when the connection is made and closes the connection unless the header
block (``\\r\\n\\r\\n``) has arrived when it fires. Later requests on the connection are covered by the
keep-alive timeout, which also closes a connection whose next request is still incomplete.

The cap. Past ``max_connections`` open connections a new one is answered at once with a
``429 TooManyRequests`` Status and ``Retry-After: 1`` and closed: kube-apiserver answers overload
with 429 (max-requests-inflight), and client-go waits and retries on it, where a refused TCP
connection would surface to the user as an error. The TLS handshake is bounded separately
(``ssl_handshake_timeout`` = the header timeout), so connections that never finish it cannot pile
up before being counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ConnectionGuard", "ConnectionLimits", "GuardedProtocol"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """``header_timeout``: seconds for the first request's headers (and the TLS handshake);
    ``idle_timeout``: seconds a keep-alive connection may wait for its next request (kube-apiserver:
    90); ``max_connections``: open connections beyond which new ones get 429."""

    header_timeout: float = 10.0
    idle_timeout: float = 90.0
    max_connections: int = 512


_TOO_MANY_BODY = json.dumps(
    {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 1},
        "code": 429,
    },
    separators=(",", ":"),
).encode()
TOO_MANY_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_TOO_MANY_BODY)).encode() + b"\r\n\r\n" + _TOO_MANY_BODY
)


class ConnectionGuard:
    """Counts open connections and makes the protocol for each new one."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: ConnectionLimits) -> None:
        self._factory = factory
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.timed_out = 0

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self)

    def make_inner(self) -> asyncio.Protocol:
        return self._factory()


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol behind a header timeout and the connection cap; forwards everything else."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen while waiting for the end of the first header block
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        guard = self._guard
        if guard.open >= guard.limits.max_connections:
            guard.refused += 1
            transport.write(TOO_MANY_RESPONSE)
            transport.close()
            return
        guard.open += 1
        self._counted = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(guard.limits.header_timeout, self._header_timeout)
        self._inner = guard.make_inner()
        self._inner.connection_made(transport)

    def _header_timeout(self) -> None:
        self._timer = None
        self._guard.timed_out += 1
        peer = self._transport.get_extra_info("peername") if self._transport else None
        log.info("closing connection from %s: no request headers within the header timeout", peer)
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer = None
                self._tail = b""
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._guard.open -= 1
            self._counted = False
        if self._inner is not None:
            self._inner.connection_lost(exc)
