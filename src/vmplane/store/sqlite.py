"""SqliteStore: the embedded, single-host Store backend on the standard library's sqlite3.

Two tables: ``objects`` holds each object's current JSON text, ``events`` is the dense change log
(one row per revision) that watches replay from. A write updates both in one transaction; the
revision is the log's primary key, so the counter survives restarts without a separate row.
The rules for what a write means live in ``store.semantics``; the watch fan-out in
``store.watching``. Written by hand because no maintained library offers Kubernetes
resourceVersion/watch semantics over SQLite.

Concurrency: two connections. Writes are decided on the event loop, with no await between reading the
current object and handing the write over, so the event loop is the lock that orders them; the
decided write (its revision and body) goes to ``store.sqlite_writer``'s thread, which commits waiting
writes together, one fsync per batch, off the loop. A write is acknowledged, and published to
watches, only once its batch is durable. Until then a later write of the same object is decided
against it (``_pending``), while reads see only committed objects, on a read-only connection of
their own (WAL readers never wait for the writer); a read first waits for the writes decided
before it (of its object, for ``get``), so it is linearizable, as etcd's reads are. The file is
locked for one store at a time by an ``flock`` on ``<file>-lock``.

The file, its WAL and shared-memory index are 0600 (tightened if older ones were wider): the store
holds every object, cloud-init userData included. SQLite gives the WAL and index the database file's
mode, so creating that 0600 before SQLite opens it covers them from their first byte.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

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
from vmplane.store.sqlite_writer import Batch, GroupCommitter, Write, transaction
from vmplane.store.watching import DEFAULT_HISTORY_BYTES, LogEntry, LogPage, WatchHub, page_of, stream

__all__ = ["DEFAULT_HISTORY", "DEFAULT_HISTORY_BYTES", "SqliteStore", "WriteObserver"]

#: Told each write transaction's seconds (under group commit, one per batch of writes): the whole
#: transaction, and its COMMIT (where the WAL is fsynced).
WriteObserver = Callable[[float, float], None]

DEFAULT_HISTORY = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


class SqliteStore:
    """A Store in one SQLite file. Create it with ``SqliteStore.open``; ``close`` it when done."""

    def __init__(
        self,
        reader: sqlite3.Connection,
        writer: sqlite3.Connection,
        lock: int,
        *,
        clock: Callable[[], datetime],
        history: int,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        observe_write: WriteObserver | None = None,
    ) -> None:
        """Wrap initialised connections and the held lock file descriptor; use ``open`` instead."""
        self._db = reader
        self._lock = lock
        self._observe_write = observe_write
        self._clock = clock
        self._hub = WatchHub()
        self._closed = False
        first, last = reader.execute("SELECT MIN(revision), MAX(revision) FROM events").fetchone()
        # _revision: the latest durable, published write; _decided: the latest handed to the writer.
        self._revision: int = last or 0
        self._decided = self._revision
        self._compacted: int = first - 1 if first is not None else 0
        self._pending: dict[tuple[str, str, str], Write] = {}
        self._last_write: Write | None = None
        self._writer = GroupCommitter(
            writer,
            history=history,
            history_bytes=history_bytes,
            committed=self._on_committed,
            failed=self._on_failed,
        )

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        history: int = DEFAULT_HISTORY,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        observe_write: WriteObserver | None = None,
    ) -> SqliteStore:
        """Open (creating if needed) the store file at ``path``; a plain call, nothing to await.

        ``clock`` gives creation and deletion timestamps (default: the system clock in UTC).
        ``history`` is how many of the latest changes stay replayable by ``watch``; older ones are
        compacted away in batches; so are the oldest once the log's bodies exceed ``history_bytes``
        (the latest change always stays). ``observe_write`` is told each transaction's durations
        (metrics). The file is locked for this process until ``close``: a second
        opener, in this process or another, gets StoreError rather than a diverging revision.
        """
        if history < 1:
            raise ValueError("history must keep at least one change")
        # The lock comes first: opening and closing the store file itself (as _make_private does)
        # would drop the POSIX locks a live store in this process holds on it.
        lock = _lock(path)
        try:
            _make_private(path)
            writer = _connect(path, writer=True)
            try:
                reader = _connect(path, writer=False)
            except BaseException:
                writer.close()
                raise
        except OSError as err:
            os.close(lock)
            raise StoreError(f"cannot open store {path}: {err}") from err
        except BaseException:
            os.close(lock)
            raise
        _tighten(path)
        return cls(
            reader,
            writer,
            lock,
            clock=clock or _utc_now,
            history=history,
            history_bytes=history_bytes,
            observe_write=observe_write,
        )

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        self._live()
        key = semantics.ObjectKey(namespace, name)
        pending = self._pending.get((resource, *key))
        if pending is not None:
            # Linearizable, as an etcd read: a write of this object decided before the read is
            # waited for, so a read-modify-write after it does not conflict with it.
            await asyncio.wait([pending.done])
        body = self._stored_body(resource, key)
        if body is None:
            raise NotFoundError(f"{resource} {_describe(*key)} not found")
        return _decode(body)

    async def list(self, resource: str, namespace: str | None = None) -> ListResult:
        """All objects of a resource (in one namespace, or all when None), ordered by namespace/name."""
        db = self._live()
        last = self._last_write
        if last is not None and not last.done.done():
            await asyncio.wait([last.done])  # every write decided before the list (commits are in order)
        # One read transaction, so that the revision is the one the rows are as of (a batch may be
        # committed and not yet published: the rows then include it, and so does the revision).
        db.execute("BEGIN")
        try:
            if namespace is None:
                rows = db.execute(
                    "SELECT body FROM objects WHERE resource = ? ORDER BY namespace, name", (resource,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT body FROM objects WHERE resource = ? AND namespace = ? ORDER BY name",
                    (resource, namespace),
                ).fetchall()
            (revision,) = db.execute("SELECT MAX(revision) FROM events").fetchone()
        finally:
            db.execute("COMMIT")
        # Decoded in one go with the cyclic GC paused: see semantics.decode_list for why.
        items = semantics.decode_list([body for (body,) in rows])
        return ListResult(items, max(revision or 0, self._revision))

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object, setting uid, resourceVersion, generation 1 and creationTimestamp."""
        key, request = semantics.decode_request(obj)
        self._live()
        if self._latest_body(resource, key) is not None:
            raise AlreadyExistsError(f"{resource} {_describe(*key)} already exists")
        revision = self._decided + 1
        stored = semantics.created(request, revision=revision, uid=str(uuid.uuid4()), now=self._clock())
        return await self._commit(resource, key, semantics.Change("ADDED", stored))

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status"] = ""
    ) -> JsonObject:
        """Replace an object; see ``Store.update`` for the resourceVersion, status and finalizer rules."""
        key, request = semantics.decode_request(obj)
        self._live()
        old = self._latest(resource, key)
        change = semantics.updated(old, request, revision=self._decided + 1, subresource=subresource)
        return await self._commit(resource, key, change)

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete an object, or mark it with a deletionTimestamp while it has finalizers."""
        self._live()
        key = semantics.ObjectKey(namespace, name)
        old = self._latest(resource, key)
        change = semantics.deleted(
            old, expected=resource_version, revision=self._decided + 1, now=self._clock()
        )
        if change is None:
            pending = self._pending.get((resource, *key))
            if pending is not None:
                await asyncio.wait([pending.done])  # what is returned must be durable, as any write
            return old
        return await self._commit(resource, key, change)

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Every change after ``since``, exactly once, in order, then live changes until closed.

        Raises ExpiredError on first iteration when ``since`` is older than the retained history;
        ``progress`` adds BOOKMARK events, see ``Store.watch``.
        """
        return stream(
            hub=self._hub,
            read=self._read_log,
            head=lambda: self._revision,
            compacted=lambda: self._compacted,
            resource=resource,
            namespace=namespace,
            since=since,
            progress=progress,
        )

    async def request_progress(self) -> None:
        """Ask every watch opened with ``progress`` to send a BOOKMARK once it has caught up."""
        self._live()
        self._hub.request_progress()

    async def current_revision(self) -> int:
        """The resourceVersion of the latest write."""
        self._live()
        return self._revision

    async def close(self) -> None:
        """Commit the writes handed over, end every open watch and close the file; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            await asyncio.sleep(0)  # the last batches' acknowledgements, queued before the join ended
            self._hub.close()
            self._db.close()
            os.close(self._lock)

    @property
    def commits(self) -> int:
        """Transactions committed since open, each one fsync: fewer than writes when they queued up."""
        return self._writer.commits

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("store is closed")
        return self._db

    def _stored_body(self, resource: str, key: semantics.ObjectKey) -> str | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE resource = ? AND namespace = ? AND name = ?",
            (resource, key.namespace, key.name),
        ).fetchone()
        return None if row is None else str(row[0])

    def _latest_body(self, resource: str, key: semantics.ObjectKey) -> str | None:
        """The object as the next write must see it: with the writes not yet committed."""
        pending = self._pending.get((resource, *key))
        if pending is not None:
            return None if pending.type == "DELETED" else pending.body
        return self._stored_body(resource, key)

    def _latest(self, resource: str, key: semantics.ObjectKey) -> JsonObject:
        body = self._latest_body(resource, key)
        if body is None:
            raise NotFoundError(f"{resource} {_describe(*key)} not found")
        return _decode(body)

    async def _commit(self, resource: str, key: semantics.ObjectKey, change: semantics.Change) -> JsonObject:
        self._decided += 1
        write = Write(
            revision=self._decided,
            resource=resource,
            namespace=key.namespace,
            name=key.name,
            type=change.type,
            body=semantics.encode(change.object),
            done=asyncio.get_running_loop().create_future(),
        )
        self._pending[(resource, *key)] = write
        self._last_write = write
        self._writer.submit(write)
        await write.done
        return change.object

    def _on_committed(self, batch: Batch) -> None:
        for write in batch.writes:
            key = (write.resource, write.namespace, write.name)
            if self._pending.get(key) is write:
                del self._pending[key]
            self._revision = write.revision
            entry = LogEntry(write.revision, write.type, write.resource, write.namespace, write.body)
            self._hub.publish(entry)
            if not write.done.done():
                write.done.set_result(None)
        self._compacted = max(self._compacted, batch.compacted)
        if self._observe_write is not None:
            self._observe_write(batch.seconds, batch.commit_seconds)

    def _on_failed(self, writes: Sequence[Write], error: BaseException, commit_failed: bool) -> None:
        if commit_failed:
            # Everything still pending was decided on top of the failed batch: back to the last
            # commit, and the writer refuses what was handed over until it sees the reset.
            self._decided = self._revision
            self._pending.clear()
            self._writer.reset()
        for write in writes:
            if not write.done.done():
                failure = StoreError(
                    f"write to {write.resource} {_describe(write.namespace, write.name)} failed: {error}"
                )
                failure.__cause__ = error
                write.done.set_exception(failure)

    def _read_log(self, resource: str, namespace: str | None, after: int, upto: int, limit: int) -> LogPage:
        query = "SELECT revision, type, namespace, body FROM events WHERE revision > ? AND revision <= ?"
        query += " AND resource = ?"
        args: tuple[object, ...] = (after, upto, resource)
        if namespace is not None:
            query += " AND namespace = ?"
            args += (namespace,)
        db = self._live()
        # The writer thread compacts concurrently: whether this page is complete is decided from the
        # oldest retained revision in the same read transaction as the page.
        db.execute("BEGIN")
        try:
            (first,) = db.execute("SELECT MIN(revision) FROM events").fetchone()
            rows = db.execute(query + " ORDER BY revision LIMIT ?", (*args, limit)).fetchall()
        finally:
            db.execute("COMMIT")
        if first is not None:
            self._compacted = max(self._compacted, first - 1)
        if after < self._compacted:
            raise ExpiredError(
                f"too old resource version: {after} (oldest retained change is {self._compacted + 1})"
            )
        return page_of((LogEntry(rev, kind, resource, ns, body) for rev, kind, ns, body in rows), limit)


def _lock(path: Path) -> int:
    """Hold ``<path>-lock`` (created 0600) for this store: the revision counter lives in memory, so two
    writers on one file would hand out the same resourceVersion."""
    try:
        fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise StoreError(f"cannot open store {path}: {err}") from err
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise StoreError(f"cannot open store {path}: it is in use ({err})") from err
    return fd


def _connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    """The writer's connection (used by its thread) or the loop's read-only one."""
    try:
        # Autocommit mode (isolation_level=None): transactions are explicit.
        db = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=not writer)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open store {path}: {err}") from err
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot use WAL journal for {path} (got {mode!r})")
        if writer:
            # FULL, not NORMAL: in WAL mode NORMAL already survives kill -9 (the WAL is in the OS
            # page cache), but an acknowledged write could still vanish on power loss or an OS
            # crash. A control plane tells clients "stored" and acts on it, so every commit fsyncs
            # the WAL, as etcd fsyncs each batch of writes.
            db.execute("PRAGMA synchronous=FULL")
            with transaction(db):  # not executescript: it would COMMIT first
                for statement in _schema():
                    db.execute(statement)
        else:
            db.execute("PRAGMA query_only=ON")
    except sqlite3.Error as err:
        db.close()
        raise StoreError(f"cannot open store {path}: {err}") from err
    except StoreError:
        db.close()
        raise
    return db


def _schema() -> list[str]:
    return [statement for statement in _SCHEMA.split(";") if statement.strip()]


def _decode(body: str) -> JsonObject:
    obj: JsonObject = json.loads(body)
    return obj


def _describe(namespace: str, name: str) -> str:
    return f'"{namespace}/{name}"' if namespace else f'"{name}"'


def _make_private(path: Path) -> None:
    """Create the store file owner-only (or tighten an existing one) before SQLite opens it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _tighten(path: Path) -> None:
    """Make the WAL and shared-memory files owner-only too, where they exist (older stores)."""
    for suffix in ("-wal", "-shm"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            continue


def _utc_now() -> datetime:
    return datetime.now(UTC)
