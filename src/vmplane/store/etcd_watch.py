"""One Store watch over one etcd watch stream: events from a revision, progress, failover, closing.

etcd delivers every change of a key range after ``start_revision`` once and in order, which is the
Store's watch contract; this module translates (see ``etcd_keys`` for tombstones), reopens the
stream from the last delivered revision on another endpoint when its member goes away (so a
failover loses and repeats nothing), and turns etcd's progress responses into BOOKMARKs.

A progress response is checked before it becomes a BOOKMARK: etcd before 3.4.24/3.5.8 may send it
ahead of events still queued for the watch (etcd issue 15220; Debian 12 ships 3.4.23). The range's
newest key, read at the response's revision, must be no newer than the last delivered event;
otherwise the request is repeated. (A delete still queued would pass that check, so
the check narrows the race rather than closing it; etcd >= 3.4.24 has none.) A BOOKMARK asked for
by ``request_progress`` must also reach the revision read when it was asked: requests are repeated
until answered, so an answer to an earlier one may still arrive after a new request.

A watch is closed by ``EtcdStore.close`` as the other backends close theirs: after it has delivered
every change committed before the close (a last progress round trip says when).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aetcd import rpc

from vmplane.store.base import ExpiredError, StoreError, WatchEvent
from vmplane.store.etcd_client import EtcdClient
from vmplane.store.etcd_keys import TOMBSTONE, prefix_end

__all__ = ["WatchHandle", "decode_value", "watch_range"]

_PUT = 0
# How long to wait before asking again for progress that was not (or not truly) reached.
_RECHECK = 0.05
_DESCEND = rpc.RangeRequest.SortOrder.Value("DESCEND")
_BY_MOD = rpc.RangeRequest.SortTarget.Value("MOD")
_PROGRESS = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())


class WatchHandle:
    """What the store holds of an open watch: a way to ask it for progress, and when to end."""

    def __init__(self, *, progress: bool) -> None:
        self.progress = progress
        self.wanted = progress  # a progress watch reports once caught up, then when asked
        self.floor = 0  # the revision the BOOKMARK asked for must reach
        self.end_at: int | None = None  # set by close: end once every change up to here is delivered
        self.reading = False  # True while waiting on etcd, False while the consumer holds an event
        self.done = asyncio.Event()
        self._queue: asyncio.Queue[Any] | None = None

    def ask(self) -> None:
        """Send a progress request on the stream (again after a reconnect, see ``watch_range``)."""
        if self._queue is not None:
            self._queue.put_nowait(_PROGRESS)

    @property
    def waiting(self) -> bool:
        """Whether a progress answer is wanted (asked for, or the close's)."""
        return self.wanted or self.end_at is not None

    def request_progress(self, revision: int) -> None:
        """Ask for a BOOKMARK at ``revision`` or later (progress watches only).

        The floor matters: an answer to an earlier request (repeated ones are, see ``_requests``)
        may still be on its way, and must not pass for this one.
        """
        if self.progress:
            self.wanted = True
            self.floor = max(self.floor, revision)
            self.ask()

    def close_at(self, revision: int) -> None:
        """End after delivering every change up to ``revision``."""
        self.end_at = revision
        self.ask()

    def _open(self) -> asyncio.Queue[Any]:
        self._queue = asyncio.Queue()
        return self._queue


def decode_value(value: bytes, revision: int) -> dict[str, Any]:
    """The object a stored value holds (tombstone marker removed), with its resourceVersion."""
    obj: dict[str, Any] = json.loads(value[len(TOMBSTONE) :] if value.startswith(TOMBSTONE) else value)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


async def watch_range(
    *, client: EtcdClient, handle: WatchHandle, key: bytes, since: int
) -> AsyncIterator[WatchEvent]:
    """Every change to keys under ``key`` after ``since``, as WatchEvents, until closed."""
    last = since
    end = prefix_end(key)
    try:
        while True:
            queue = handle._open()
            create = rpc.WatchCreateRequest(
                key=key, range_end=end, start_revision=last + 1, prev_kv=True, progress_notify=handle.progress
            )
            queue.put_nowait(rpc.WatchRequest(create_request=create))
            call = client.watch_stub().Watch(_requests(queue, handle))
            endpoint = client.endpoint
            try:
                while True:
                    handle.reading = True
                    response = await call.read()
                    handle.reading = False
                    if response is grpc.aio.EOF:
                        raise StoreError("etcd ended the watch")
                    if response.compact_revision:
                        raise ExpiredError(
                            f"too old resource version: {since} (compacted to {response.compact_revision})"
                        )
                    if response.canceled:
                        raise StoreError(f"etcd cancelled the watch: {response.cancel_reason}")
                    if response.created:
                        if handle.waiting:
                            handle.ask()
                        continue
                    if response.events:
                        for event in response.events:
                            translated = _translate(event)
                            last = event.kv.mod_revision
                            if translated is not None:
                                yield translated
                        continue
                    revision = response.header.revision
                    if not await _caught_up(client, key, end, last, revision):
                        continue  # asked again by _requests while still waiting
                    if handle.end_at is not None and revision >= handle.end_at:
                        return
                    if handle.wanted and revision >= handle.floor:
                        handle.wanted = False
                        yield WatchEvent("BOOKMARK", {}, revision)
            except grpc.aio.AioRpcError as err:
                if handle.end_at is not None:
                    return  # the store closed its channels
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise StoreError(f"etcd watch failed: {err.details()}") from err
                client.fail_over(endpoint)
                await asyncio.sleep(0.1)
            finally:
                handle.reading = False
                queue.put_nowait(None)
                call.cancel()
    finally:
        handle.done.set()


async def _requests(queue: asyncio.Queue[Any], handle: WatchHandle) -> AsyncIterator[Any]:
    """The stream's requests; while a progress answer is wanted, the request is repeated every
    ``_RECHECK`` (etcd 3.4 drops a progress request that reaches a watch still catching up)."""
    while True:
        try:
            request = await asyncio.wait_for(queue.get(), _RECHECK if handle.waiting else None)
        except TimeoutError:
            request = _PROGRESS
        if request is None:
            return
        yield request


def _translate(event: Any) -> WatchEvent | None:
    kv, prev = event.kv, event.prev_kv
    revision = kv.mod_revision
    prev_live = bool(prev.value) and not prev.value.startswith(TOMBSTONE)
    if event.type == _PUT:
        if kv.value.startswith(TOMBSTONE):
            return WatchEvent("DELETED", decode_value(kv.value, revision), revision)
        if prev_live:
            return WatchEvent("MODIFIED", decode_value(kv.value, revision), revision)
        return WatchEvent("ADDED", decode_value(kv.value, revision), revision)
    if not prev_live:
        return None  # a tombstone removed by the compactor: its deletion was delivered already
    return WatchEvent("DELETED", decode_value(prev.value, revision), revision)


async def _caught_up(client: EtcdClient, key: bytes, end: bytes, last: int, revision: int) -> bool:
    """Whether no key in the range, as of ``revision``, was written after ``last`` (see module doc)."""
    if revision <= last:
        return True
    # The range's newest key (count_only would ignore min_mod_revision): etcd sorts, we get one.
    request = rpc.RangeRequest(
        key=key,
        range_end=end,
        revision=revision,
        keys_only=True,
        limit=1,
        sort_order=_DESCEND,
        sort_target=_BY_MOD,
    )
    try:
        response = await client.call(lambda timeout: client.kv().Range(request, timeout=timeout))
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.OUT_OF_RANGE:
            return False  # compacted meanwhile: the stream itself reports that
        raise StoreError(f"etcd range failed: {err.details()}") from err
    return not response.kvs or int(response.kvs[0].mod_revision) <= last
