"""MemoryStore: a dict-backed Store with the same semantics as SqliteStore, for tests and benchmarks.

It keeps JSON text, as SqliteStore does, so that callers get fresh copies on every read and cannot
mutate stored state, and so that unit tests exercise the same encode/decode path. The rules come from
``store.semantics`` and the watch fan-out from ``store.watching``: only the storage differs.
Never imported by production code.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from itertools import islice
from typing import Literal

from vmplane.store import semantics
from vmplane.store.base import (
    AlreadyExistsError,
    JsonObject,
    ListResult,
    NotFoundError,
    StoreError,
    WatchEvent,
)
from vmplane.store.watching import DEFAULT_HISTORY_BYTES, LogEntry, LogPage, WatchHub, page_of, stream

__all__ = ["MemoryStore"]


class MemoryStore:
    """A Store in process memory; ``history`` bounds the replayable change log like SqliteStore's."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        history: int = 100_000,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
    ) -> None:
        """An empty store; ``clock`` gives timestamps (default: the system clock in UTC).

        The log keeps the latest ``history`` changes, fewer once their bodies exceed
        ``history_bytes`` (the latest always stays), as SqliteStore's does.
        """
        if history < 1:
            raise ValueError("history must keep at least one change")
        self._clock = clock or (lambda: datetime.now(UTC))
        # resource -> (namespace, name) -> JSON text
        self._objects: dict[str, dict[semantics.ObjectKey, str]] = {}
        # The latest `history` changes; revisions are dense, so an entry's index is computable.
        self._log: deque[LogEntry] = deque()
        self._history = history
        self._history_bytes = history_bytes
        self._log_bytes = 0
        self._revision = 0
        self._hub = WatchHub()
        self._closed = False

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        self._check_open()
        return self._existing(resource, semantics.ObjectKey(namespace, name))

    async def list(self, resource: str, namespace: str | None = None) -> ListResult:
        """All objects of a resource (in one namespace, or all when None), ordered by namespace/name."""
        self._check_open()
        objects = self._objects.get(resource, {})
        keys = sorted(key for key in objects if namespace is None or key.namespace == namespace)
        return ListResult(semantics.decode_list([objects[key] for key in keys]), self._revision)

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object, setting uid, resourceVersion, generation 1 and creationTimestamp."""
        key, request = semantics.decode_request(obj)
        self._check_open()
        if key in self._objects.get(resource, {}):
            raise AlreadyExistsError(f"{resource} {key.namespace}/{key.name} already exists")
        stored = semantics.created(
            request, revision=self._revision + 1, uid=str(uuid.uuid4()), now=self._clock()
        )
        self._commit(resource, key, semantics.Change("ADDED", stored))
        return stored

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status"] = ""
    ) -> JsonObject:
        """Replace an object; see ``Store.update`` for the resourceVersion, status and finalizer rules."""
        key, request = semantics.decode_request(obj)
        self._check_open()
        old = self._existing(resource, key)
        change = semantics.updated(old, request, revision=self._revision + 1, subresource=subresource)
        self._commit(resource, key, change)
        return change.object

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete an object, or mark it with a deletionTimestamp while it has finalizers."""
        self._check_open()
        key = semantics.ObjectKey(namespace, name)
        old = self._existing(resource, key)
        change = semantics.deleted(
            old, expected=resource_version, revision=self._revision + 1, now=self._clock()
        )
        if change is None:
            return old
        self._commit(resource, key, change)
        return change.object

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Every change after ``since``, exactly once, in order, then live changes until closed.

        ``progress`` adds BOOKMARK events, see ``Store.watch``.
        """
        return stream(
            hub=self._hub,
            read=self._read_log,
            head=lambda: self._revision,
            compacted=lambda: self._revision - len(self._log),
            resource=resource,
            namespace=namespace,
            since=since,
            progress=progress,
        )

    async def request_progress(self) -> None:
        """Ask every watch opened with ``progress`` to send a BOOKMARK once it has caught up."""
        self._check_open()
        self._hub.request_progress()

    async def current_revision(self) -> int:
        """The resourceVersion of the latest write."""
        self._check_open()
        return self._revision

    async def close(self) -> None:
        """End every open watch; later calls raise StoreError."""
        self._closed = True
        self._hub.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def _existing(self, resource: str, key: semantics.ObjectKey) -> JsonObject:
        body = self._objects.get(resource, {}).get(key)
        if body is None:
            raise NotFoundError(f"{resource} {key.namespace}/{key.name} not found")
        obj: JsonObject = json.loads(body)
        return obj

    def _commit(self, resource: str, key: semantics.ObjectKey, change: semantics.Change) -> None:
        self._revision += 1
        body = semantics.encode(change.object)
        if change.type == "DELETED":
            del self._objects[resource][key]
        else:
            self._objects.setdefault(resource, {})[key] = body
        entry = LogEntry(self._revision, change.type, resource, key.namespace, body)
        self._log.append(entry)
        self._log_bytes += entry.size
        while len(self._log) > 1 and (
            len(self._log) > self._history or self._log_bytes > self._history_bytes
        ):
            self._log_bytes -= self._log.popleft().size
        self._hub.publish(entry)

    def _read_log(self, resource: str, namespace: str | None, after: int, upto: int, limit: int) -> LogPage:
        first = self._revision - len(self._log) + 1  # revision of self._log[0]
        candidates = islice(self._log, max(0, after + 1 - first), max(0, upto + 1 - first))
        matching = (
            entry
            for entry in candidates
            if entry.resource == resource and (namespace is None or entry.namespace == namespace)
        )
        return page_of(matching, limit)
