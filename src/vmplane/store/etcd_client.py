"""The etcd connection EtcdStore uses: several endpoints with failover, optional client TLS.

Client choice. ``aetcd`` 1.0.0 ships etcd's v3 gRPC API compiled for Python (``aetcd.rpc``) and an
asyncio client over ``grpc.aio``; vmplane uses its compiled messages and stubs directly rather than
its high-level client because that client takes one endpoint, exposes neither range ``limit`` with
``more`` nor the watch stream's ``progress_request`` (which Kubernetes' watch cache needs), and its
author no longer maintains it: the part used here is the generated protocol, which only changes
with etcd's API. ``etcd3gw`` is maintained but synchronous over the JSON gateway (a thread per
call and per watch), and ``etcd3`` ignores ``limit``/``revision``. Measured here against etcd
3.4.23: puts, ranges at a revision, transactions on ``mod_revision``, watches from a revision with
``prev_kv`` and progress requests all work.

Failover: one channel per endpoint; a call that fails as unavailable, or takes longer than
``call_timeout`` (a write in flight when the leader dies stalls for ~7 s), moves to the next
endpoint and is retried there until ``deadline``. Retrying is only done for requests whose repeat
is harmless or detected: reads, and transactions guarded by a compare (see ``EtcdStore`` for how a
repeated write that had in fact committed is recognised).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from vmplane.store.base import StoreError

__all__ = ["EtcdClient", "EtcdConfig", "EtcdUnavailableError", "parse_store_url"]

T = TypeVar("T")
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Objects are up to the API's 3 MiB and a list page may hold many; gRPC's default is 4 MiB.
_MAX_MESSAGE = 256 * 1024 * 1024


class EtcdUnavailableError(StoreError):
    """No endpoint answered within the deadline."""


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """How to reach an etcd cluster: ``host:port`` endpoints and, for TLS, PEM files."""

    endpoints: tuple[str, ...]
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    call_timeout: float = 3.0
    deadline: float = 30.0


def parse_store_url(url: str) -> tuple[str, ...]:
    """The endpoints of ``etcd://HOST:PORT[,HOST:PORT...]``; ValueError names what is wrong."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep or not rest:
        raise ValueError(f"--store: expected etcd://HOST:PORT[,HOST:PORT...], got {url!r}")
    endpoints = []
    for endpoint in rest.split(","):
        host, colon, port = endpoint.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--store: {endpoint!r} is not HOST:PORT")
        if not _is_host(host):
            raise ValueError(f"--store: {host!r} is not a host name or address")
        endpoints.append(f"{host}:{int(port)}")
    return tuple(endpoints)


def _is_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return all(part and all(c.isalnum() or c == "-" for c in part) for part in host.split("."))


class EtcdClient:
    """Stubs of the endpoint in use, and ``call`` to run a request with failover."""

    def __init__(self, config: EtcdConfig) -> None:
        if not config.endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.config = config
        self._credentials = _credentials(config)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[object, str], Any] = {}
        self._index = 0

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self.config.endpoints[self._index]

    def channel(self, endpoint: str | None = None) -> grpc.aio.Channel:
        """The (lazily opened) channel to ``endpoint``, by default the one in use."""
        endpoint = endpoint or self.endpoint
        channel = self._channels.get(endpoint)
        if channel is None:
            options = [
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
            ]
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(endpoint, options=options)
            else:
                channel = grpc.aio.secure_channel(endpoint, self._credentials, options=options)
            self._channels[endpoint] = channel
        return channel

    def kv(self, endpoint: str | None = None) -> Any:
        """The KV service (Range, Txn, Compact)."""
        return self._stub(rpc.KVStub, endpoint)

    def watch_stub(self) -> Any:
        """The Watch service of the endpoint in use."""
        return self._stub(rpc.WatchStub, None)

    def _stub(self, kind: Callable[[grpc.aio.Channel], Any], endpoint: str | None) -> Any:
        # Kept: building a stub registers every method of the service again (a third of a write's
        # client-side cost when built per call).
        endpoint = endpoint or self.endpoint
        stub = self._stubs.get((kind, endpoint))
        if stub is None:
            stub = self._stubs[(kind, endpoint)] = kind(self.channel(endpoint))
        return stub

    def fail_over(self, endpoint: str) -> None:
        """Move to the next endpoint, unless another caller already moved away from ``endpoint``."""
        if self.endpoint == endpoint:
            self._index = (self._index + 1) % len(self.config.endpoints)

    async def call(self, request: Callable[[float], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``request(timeout)`` on the endpoint in use, failing over until the deadline.

        Errors other than unavailability are raised as they are (grpc.aio.AioRpcError).
        """
        give_up = time.monotonic() + self.config.deadline
        pause = 0.05
        while True:
            endpoint = self.endpoint
            try:
                return await request(self.config.call_timeout)
            except grpc.aio.AioRpcError as err:
                if not retry or err.code() not in _RETRYABLE:
                    raise
                if time.monotonic() + pause > give_up:
                    raise EtcdUnavailableError(
                        f"etcd unavailable at {self.config.endpoints}: {err.details()}"
                    ) from err
                self.fail_over(endpoint)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()


def _credentials(config: EtcdConfig) -> grpc.ChannelCredentials | None:
    if config.cafile is None and config.certfile is None and config.keyfile is None:
        return None
    if (config.certfile is None) != (config.keyfile is None):
        raise ValueError("--etcd-certfile and --etcd-keyfile go together")
    root = config.cafile.read_bytes() if config.cafile else None
    key = config.keyfile.read_bytes() if config.keyfile else None
    chain = config.certfile.read_bytes() if config.certfile else None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
