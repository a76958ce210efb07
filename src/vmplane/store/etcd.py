"""EtcdStore: the Store on an etcd cluster, mapping Kubernetes storage as kube-apiserver does.

One key per object (``etcd_keys``), ``resourceVersion`` = the key's ``mod_revision`` (so one global
revision, as the protocol wants, with no counter of our own), every write a transaction that
compares the ``mod_revision`` it read: a create compares ``version == 0`` (absent), an update or
delete the revision it decided on, and a failed compare re-reads and decides again, exactly as
kube-apiserver's ``GuaranteedUpdate``. What a write means comes from ``store.semantics``, shared with
the other backends; watches are etcd's own (``etcd_watch``), compaction is etcd's, coordinated
(``etcd_compaction``). The client and why it was chosen: ``etcd_client``.

Writes retried after an endpoint failed may have committed the first time: the failed compare then
returns the key as it is now, and a value equal to what this write sent is recognised as this write
(a uid is in every body), so an acknowledged write is never reported as a conflict of its own.
A retried delete that had committed finds the key gone and reports NotFoundError, as a repeated
delete does in Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import grpc
from aetcd import rpc

from vmplane.store import semantics
from vmplane.store.base import (
    AlreadyExistsError,
    ExpiredError,
    JsonObject,
    ListResult,
    NotFoundError,
    StoreError,
    WatchEvent,
)
from vmplane.store.etcd_client import EtcdClient, EtcdConfig
from vmplane.store.etcd_compaction import Compactor, compact
from vmplane.store.etcd_keys import (
    COMPACT_KEY,
    TOMBSTONE,
    ContinueToken,
    decode_continue,
    encode_continue,
    object_key,
    prefix_end,
    scan_prefix,
)
from vmplane.store.etcd_watch import WatchHandle, decode_value, watch_range

__all__ = ["DEFAULT_COMPACTION_INTERVAL", "EtcdStore", "ListPage"]

# kube-apiserver's --etcd-compaction-interval default.
DEFAULT_COMPACTION_INTERVAL = 300.0
_LIST_PAGE = 5_000
_CLOSE_WAIT = 5.0
# Keys whose last written or read value is kept to save the read before an update.
_RECENT = 10_000
_VERSION = rpc.Compare.CompareTarget.Value("VERSION")
_MOD = rpc.Compare.CompareTarget.Value("MOD")
_EQUAL = rpc.Compare.CompareResult.Value("EQUAL")


class _Known(NamedTuple):
    """A key's value as of its ``mod_revision`` (the fields of etcd's KeyValue that writes use)."""

    mod_revision: int
    value: bytes


class ListPage(NamedTuple):
    """One page of a list, and the token of the next (None on the last page)."""

    result: ListResult
    continue_token: str | None


class EtcdStore:
    """A Store in etcd. Create it with ``EtcdStore.open``; ``close`` it when done."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        prefix: str,
        clock: Callable[[], datetime],
        history: int | None,
        compaction_interval: float | None,
    ) -> None:
        """Wrap a client; use ``open`` instead."""
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._history = history
        self._compacted = 0
        self._compact_version = 0
        self._revision = 0  # the newest revision this store has seen, for the compactor
        self._watches: set[WatchHandle] = set()
        self._recent: dict[bytes, _Known] = {}
        self._closed = False
        self._compactor: asyncio.Task[None] | None = None
        if compaction_interval is not None:
            compactor = Compactor(
                client, interval=compaction_interval, revision=lambda: self._revision, compacted=self._swept
            )
            self._compactor = asyncio.get_running_loop().create_task(compactor.run())

    @classmethod
    async def open(
        cls,
        config: EtcdConfig,
        *,
        prefix: str = "/registry",
        clock: Callable[[], datetime] | None = None,
        history: int | None = None,
        compaction_interval: float | None = DEFAULT_COMPACTION_INTERVAL,
    ) -> EtcdStore:
        """Connect (checking that etcd answers) to the cluster of ``config``.

        ``compaction_interval`` (seconds; None for none) runs the coordinated compactor;
        ``history``, when set, also compacts inline so that about that many changes stay replayable.
        """
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("prefix must start with / and not end with it")
        store = cls(
            EtcdClient(config),
            prefix=prefix,
            clock=clock or _utc_now,
            history=history,
            compaction_interval=compaction_interval,
        )
        try:
            await store.current_revision()
        except BaseException:
            await store.close()
            raise
        return store

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        key = object_key(self._prefix, resource, namespace, name)
        kv = await self._read(key)
        self._remember(key, kv)
        if kv is None:
            raise NotFoundError(f"{resource} {_describe(namespace, name)} not found")
        return decode_value(kv.value, kv.mod_revision)

    async def list(self, resource: str, namespace: str | None = None) -> ListResult:
        """All objects of a resource (in one namespace, or all when None), ordered by key."""
        items: list[JsonObject] = []
        token: str | None = None
        revision = 0
        while True:
            page = await self.list_page(resource, namespace, limit=_LIST_PAGE, continue_token=token)
            items.extend(page.result.items)
            revision = page.result.resource_version
            token = page.continue_token
            if token is None:
                return ListResult(items, revision)

    async def list_page(
        self, resource: str, namespace: str | None, *, limit: int, continue_token: str | None = None
    ) -> ListPage:
        """Up to ``limit`` objects, from the start or where ``continue_token`` says, at one revision.

        Raises ExpiredError when the token's revision has been compacted (a client re-lists).
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        base = scan_prefix(self._prefix, resource, namespace)
        start, revision = base, 0
        if continue_token is not None:
            token = decode_continue(continue_token)
            start, revision = base + token.start.encode(), token.revision
        items: list[JsonObject] = []
        while True:
            request = rpc.RangeRequest(
                key=start, range_end=prefix_end(base), limit=limit - len(items), revision=revision
            )
            response = await self._range(request)
            revision = revision or response.header.revision
            kvs = list(response.kvs)
            bodies = [kv.value.decode() for kv in kvs if not kv.value.startswith(TOMBSTONE)]
            decoded = semantics.decode_list(bodies)
            live = [kv for kv in kvs if not kv.value.startswith(TOMBSTONE)]
            for kv, obj in zip(live, decoded, strict=True):
                obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
            items.extend(decoded)
            if not response.more:
                return ListPage(ListResult(items, revision), None)
            start = kvs[-1].key + b"\x00"
            if len(items) >= limit:
                token = ContinueToken(revision, start[len(base) :].decode())
                return ListPage(ListResult(items, revision), encode_continue(token))

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object, setting uid, resourceVersion, generation 1 and creationTimestamp."""
        key, request = semantics.decode_request(obj)
        self._live()
        stored = semantics.created(request, revision=0, uid=str(uuid.uuid4()), now=self._clock())
        body = _body(stored)
        etcd_key = object_key(self._prefix, resource, *key)
        compare = rpc.Compare(key=etcd_key, target=_VERSION, result=_EQUAL, version=0)
        while True:
            succeeded, revision, current = await self._put_if(etcd_key, compare, body)
            if succeeded:
                self._remember(etcd_key, _Known(revision, body))
                return await self._written(_with_version(stored, revision))
            if current is not None and current.value == body:
                return _with_version(stored, current.mod_revision)  # our retried write had committed
            if current is not None and not current.value.startswith(TOMBSTONE):
                raise AlreadyExistsError(f"{resource} {_describe(*key)} already exists")
            # A tombstone (or a key deleted meanwhile): compare what is there now.
            compare = _compare_mod(etcd_key, current.mod_revision if current is not None else None)

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status"] = ""
    ) -> JsonObject:
        """Replace an object; see ``Store.update`` for the resourceVersion, status and finalizer rules."""
        key, request = semantics.decode_request(obj)
        etcd_key = object_key(self._prefix, resource, *key)
        # What this store last wrote or read of the key saves a read: the compare catches it stale.
        current = self._recent.get(etcd_key) or await self._read(etcd_key)
        while True:
            if current is None:
                raise NotFoundError(f"{resource} {_describe(*key)} not found")
            old = decode_value(current.value, current.mod_revision)
            change = semantics.updated(old, request, revision=0, subresource=subresource)
            body = _body(change.object)
            if change.type == "DELETED":
                body = TOMBSTONE + body
            compare = _compare_mod(etcd_key, current.mod_revision)
            succeeded, revision, now = await self._put_if(etcd_key, compare, body)
            if succeeded:
                self._remember(etcd_key, None if change.type == "DELETED" else _Known(revision, body))
                return await self._written(_with_version(change.object, revision))
            if now is not None and now.value == body and now.mod_revision > current.mod_revision:
                return _with_version(change.object, now.mod_revision)  # our retried write had committed
            current = None if now is None or now.value.startswith(TOMBSTONE) else now

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete an object, or mark it with a deletionTimestamp while it has finalizers."""
        etcd_key = object_key(self._prefix, resource, namespace, name)
        current = await self._read(etcd_key)
        while True:
            if current is None:
                raise NotFoundError(f"{resource} {_describe(namespace, name)} not found")
            old = decode_value(current.value, current.mod_revision)
            change = semantics.deleted(old, expected=resource_version, revision=0, now=self._clock())
            if change is None:
                return old
            compare = _compare_mod(etcd_key, current.mod_revision)
            if change.type == "DELETED":
                op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=etcd_key))
            else:
                op = rpc.RequestOp(request_put=rpc.PutRequest(key=etcd_key, value=_body(change.object)))
            succeeded, revision, now = await self._txn(etcd_key, compare, op)
            if succeeded:
                self._remember(etcd_key, None)
                return await self._written(_with_version(change.object, revision))
            current = None if now is None or now.value.startswith(TOMBSTONE) else now

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Every change after ``since``, exactly once, in order, then live changes until closed.

        Raises ExpiredError on first iteration when ``since`` has been compacted; ``progress`` adds
        BOOKMARK events, see ``Store.watch``.
        """
        return self._watch(scan_prefix(self._prefix, resource, namespace), since, progress)

    async def _watch(self, key: bytes, since: int, progress: bool) -> AsyncIterator[WatchEvent]:
        self._live()
        handle = WatchHandle(progress=progress)
        self._watches.add(handle)
        try:
            async for event in watch_range(client=self._client, handle=handle, key=key, since=since):
                yield event
        finally:
            self._watches.discard(handle)

    async def request_progress(self) -> None:
        """Ask every watch opened with ``progress`` to send a BOOKMARK once it has caught up."""
        revision = await self.current_revision()  # every write committed before the request
        for handle in list(self._watches):
            handle.request_progress(revision)

    async def current_revision(self) -> int:
        """The revision of the latest write to the cluster (any key)."""
        self._live()
        response = await self._range(rpc.RangeRequest(key=COMPACT_KEY, count_only=True))
        return int(response.header.revision)

    async def compact(self, revision: int) -> None:
        """Compact etcd's history up to ``revision`` now (through the compact key's compare-and-swap,
        so that it counts as this interval's compaction for every other store)."""
        self._live()
        while True:
            result = await compact(self._client, seen_version=self._compact_version, revision=revision)
            self._compact_version = result.version
            if result.compacted:
                self._compacted = max(self._compacted, revision)
                await self._swept(revision)
                return

    async def _swept(self, revision: int) -> None:
        """Remove the tombstones written at or before ``revision`` (its compaction's): every watch
        that could still need one as a DELETED event would now get ExpiredError instead."""
        start, end = f"{self._prefix}/".encode(), prefix_end(f"{self._prefix}/".encode())
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=_LIST_PAGE, max_mod_revision=revision)
            response = await self._range(request)
            for kv in response.kvs:
                if kv.value.startswith(TOMBSTONE):
                    # Compared, so that an object created again under the key meanwhile stays.
                    op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=kv.key))
                    await self._txn(kv.key, _compare_mod(kv.key, kv.mod_revision), op)
                    self._recent.pop(kv.key, None)
            if not response.more:
                return
            start = response.kvs[-1].key + b"\x00"

    async def close(self) -> None:
        """End every open watch once it has delivered what was written before; safe to call twice."""
        if self._closed:
            return
        # Bounded: with etcd unreachable, the watches end without their last round trip.
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT):
                revision = await self.current_revision()
                waiting = [h for h in self._watches if h.reading]
                for handle in list(self._watches):
                    handle.close_at(revision)
                waiters = [asyncio.ensure_future(handle.done.wait()) for handle in waiting]
                try:
                    if waiters:
                        await asyncio.wait(waiters)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        self._closed = True
        for handle in list(self._watches):
            handle.close_at(0)
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        await self._client.close()

    # --- etcd requests --------------------------------------------------------------------------------

    def _live(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def _seen(self, revision: int) -> None:
        self._revision = max(self._revision, revision)

    async def _call(self, request: Callable[[float], Any]) -> Any:
        self._live()
        try:
            return await self._client.call(request)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise ExpiredError(f"too old resource version: {err.details()}") from err
            raise StoreError(f"etcd request failed: {err.details()}") from err

    def _remember(self, key: bytes, known: Any) -> None:
        self._recent.pop(key, None)
        if known is not None:
            self._recent[key] = _Known(int(known.mod_revision), bytes(known.value))
            if len(self._recent) > _RECENT:
                del self._recent[next(iter(self._recent))]  # the oldest remembered

    async def _range(self, request: Any) -> Any:
        response = await self._call(lambda timeout: self._client.kv().Range(request, timeout=timeout))
        self._seen(response.header.revision)
        return response

    async def _read(self, key: bytes) -> Any:
        """The key's KeyValue, or None when absent or a tombstone."""
        kvs = (await self._range(rpc.RangeRequest(key=key))).kvs
        if not kvs or kvs[0].value.startswith(TOMBSTONE):
            return None
        return kvs[0]

    async def _put_if(self, key: bytes, compare: Any, body: bytes) -> tuple[bool, int, Any]:
        return await self._txn(key, compare, rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=body)))

    async def _txn(self, key: bytes, compare: Any, op: Any) -> tuple[bool, int, Any]:
        """Run ``op`` if ``compare`` holds: (succeeded, revision, the key's KeyValue on failure)."""
        txn = rpc.TxnRequest(
            compare=[compare] if compare is not None else [],
            success=[op],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        response = await self._call(lambda timeout: self._client.kv().Txn(txn, timeout=timeout))
        self._seen(response.header.revision)
        if response.succeeded:
            return True, int(response.header.revision), None
        kvs = response.responses[0].response_range.kvs
        return False, int(response.header.revision), kvs[0] if kvs else None

    async def _written(self, obj: JsonObject) -> JsonObject:
        """After a write: compact inline when a change-count ``history`` is set."""
        revision = int(obj["metadata"]["resourceVersion"])
        # Every ``history`` changes or so (the compact key's own write is a change too, so compacting
        # more often would leave fewer than ``history`` of the store's own changes), compact to one
        # more than ``history`` back: between ``history`` and twice that many stay replayable.
        if self._history is not None and revision - self._compacted >= 2 * self._history + 1:
            target = revision - self._history - 1
            with contextlib.suppress(StoreError):  # the write stands; the next one compacts
                result = await compact(self._client, seen_version=self._compact_version, revision=target)
                self._compact_version = result.version
                if result.compacted:
                    self._compacted = target
        return obj


def _compare_mod(key: bytes, revision: int | None) -> Any:
    if revision is None:
        return rpc.Compare(key=key, target=_VERSION, result=_EQUAL, version=0)
    return rpc.Compare(key=key, target=_MOD, result=_EQUAL, mod_revision=revision)


def _body(obj: JsonObject) -> bytes:
    metadata = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return semantics.encode({**obj, "metadata": metadata}).encode()


def _with_version(obj: JsonObject, revision: int) -> JsonObject:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(revision)}}


def _describe(namespace: str, name: str) -> str:
    return f'"{namespace}/{name}"' if namespace else f'"{name}"'


def _utc_now() -> datetime:
    return datetime.now(UTC)
