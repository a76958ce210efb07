"""Compaction of etcd's history, coordinated so that one API server compacts per interval.

As kube-apiserver's ``storage/etcd3/compact.go``: every API server keeps the version of the
``compact_rev_key`` it last saw; each interval it writes the key in a transaction that compares that
version, and only the one whose compare succeeds compacts (to the revision it observed an interval
earlier, so at least one interval of history stays). The others learn the new version from the
failed compare and try again next interval. Compaction itself is idempotent in etcd, so a retry
after an ambiguous failure is harmless.

``compact`` is also used inline by EtcdStore when it is opened with a change-count ``history``
(tests and small installations): the same compare-and-swap, so several stores still agree.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import grpc
from aetcd import rpc

from vmplane.store.base import StoreError
from vmplane.store.etcd_client import EtcdClient
from vmplane.store.etcd_keys import COMPACT_KEY

__all__ = ["CompactResult", "Compactor", "compact"]

_VERSION = rpc.Compare.CompareTarget.Value("VERSION")
_EQUAL = rpc.Compare.CompareResult.Value("EQUAL")


class CompactResult(NamedTuple):
    """The compact key's version after the attempt, and whether this caller compacted."""

    version: int
    compacted: bool


async def compact(client: EtcdClient, *, seen_version: int, revision: int) -> CompactResult:
    """Compact to ``revision`` if the compact key is still at ``seen_version`` (then bump it)."""
    compare = rpc.Compare(key=COMPACT_KEY, target=_VERSION, result=_EQUAL, version=seen_version)
    txn = rpc.TxnRequest(
        compare=[compare],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=COMPACT_KEY, value=str(revision).encode()))],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=COMPACT_KEY))],
    )
    try:
        response = await client.call(lambda timeout: client.kv().Txn(txn, timeout=timeout))
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            return CompactResult(int(kvs[0].version) if kvs else 0, False)
        await client.call(
            lambda timeout: client.kv().Compact(rpc.CompactionRequest(revision=revision), timeout=timeout)
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.OUT_OF_RANGE:  # someone compacted further already
            return CompactResult(seen_version + 1, True)
        raise StoreError(f"etcd compaction failed: {err.details()}") from err
    return CompactResult(seen_version + 1, True)


class Compactor:
    """The interval loop: ``run`` until cancelled; ``revision`` says what the store has seen."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        interval: float,
        revision: Callable[[], int],
        compacted: Callable[[int], Awaitable[None]],
    ) -> None:
        self._client = client
        self._interval = interval
        self._revision = revision
        self._compacted = compacted  # told the revision after each compaction this one did
        self._version = 0

    async def run(self) -> None:
        """Every interval, try to compact to the revision seen one interval earlier."""
        previous = 0
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(StoreError):  # etcd unavailable: try again next interval
                if previous > 0:
                    result = await compact(self._client, seen_version=self._version, revision=previous)
                    self._version = result.version
                    if result.compacted:
                        await self._compacted(previous)
                previous = self._revision()
