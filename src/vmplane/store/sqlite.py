"""SqliteStore: the embedded, single-host Store backend on the standard library's sqlite3.

Two tables: ``objects`` holds each object's current JSON text, ``events`` is the dense change log
(one row per revision) that watches replay from. A write updates both in one transaction; the
revision is the log's primary key, so the counter survives restarts without a separate row.
The rules for what a write means live in ``store.semantics``; the watch fan-out in
``store.watching``. Written by hand because no maintained library offers Kubernetes
resourceVersion/watch semantics over SQLite.

Concurrency: one connection, used only from the event loop's thread, and no method awaits between
its first and last statement, so each operation is atomic with respect to other coroutines: the
event loop is the lock. The price is that a commit's fsync blocks the loop for its duration, which
suits the small, infrequent writes of a one-host control plane (several hosts use etcd).

The file, its WAL and shared-memory index are 0600 (tightened if older ones were wider): the store
holds every object, cloud-init userData included. SQLite gives the WAL and index the database file's
mode, so creating that 0600 before SQLite opens it covers them from their first byte.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
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

__all__ = ["DEFAULT_HISTORY", "DEFAULT_HISTORY_BYTES", "SqliteStore", "WriteObserver"]

#: Told each write's seconds: the whole transaction, and its COMMIT (where the WAL is fsynced).
WriteObserver = Callable[[float, float], None]

DEFAULT_HISTORY = 100_000
# Compaction deletes old log rows in batches of up to this many, so that most writes pay nothing.
_MAX_COMPACTION_BATCH = 1_000

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
        connection: sqlite3.Connection,
        *,
        clock: Callable[[], datetime],
        history: int,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        observe_write: WriteObserver | None = None,
    ) -> None:
        """Wrap an initialised connection; use ``open`` instead."""
        self._db = connection
        self._observe_write = observe_write
        self._clock = clock
        self._history = history
        self._history_bytes = history_bytes
        (logged,) = connection.execute("SELECT COALESCE(SUM(length(body)), 0) FROM events").fetchone()
        self._log_bytes: int = logged
        self._batch = max(1, min(_MAX_COMPACTION_BATCH, history // 10))
        self._hub = WatchHub()
        self._closed = False
        first, last = connection.execute("SELECT MIN(revision), MAX(revision) FROM events").fetchone()
        self._revision: int = last or 0
        self._compacted: int = first - 1 if first is not None else 0

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
        (the latest change always stays). ``observe_write`` is told each write's durations (metrics).
        The file is locked for this process until ``close``: a second
        opener, in this process or another, gets StoreError rather than a diverging revision.
        """
        if history < 1:
            raise ValueError("history must keep at least one change")
        try:
            _make_private(path)
        except OSError as err:
            raise StoreError(f"cannot open store {path}: {err}") from err
        try:
            # Autocommit mode (isolation_level=None): transactions are explicit, see _transaction.
            # timeout=0: a locked file is an error at once, not after a wait.
            db = sqlite3.connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open store {path}: {err}") from err
        try:
            # Hold the file lock for the connection's lifetime: the revision counter is cached in
            # memory, so two writers on one file would hand out the same resourceVersion.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot use WAL journal for {path} (got {mode!r})")
            # FULL, not NORMAL: in WAL mode NORMAL already survives kill -9 (the WAL is in the OS
            # page cache), but an acknowledged write could still vanish on power loss or an OS
            # crash. A control plane tells clients "stored" and acts on it, so every commit fsyncs
            # the WAL, as etcd fsyncs each write; writes are small and rare enough to afford it.
            db.execute("PRAGMA synchronous=FULL")
            with _transaction(db):  # takes the exclusive lock now, not at the first write
                for statement in _schema():  # not executescript: it would COMMIT first
                    db.execute(statement)
        except sqlite3.Error as err:
            db.close()
            raise StoreError(f"cannot open store {path}: {err}") from err
        except StoreError:
            db.close()
            raise
        _tighten(path)
        return cls(
            db,
            clock=clock or _utc_now,
            history=history,
            history_bytes=history_bytes,
            observe_write=observe_write,
        )

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        self._live()
        return self._existing(resource, semantics.ObjectKey(namespace, name))

    async def list(self, resource: str, namespace: str | None = None) -> ListResult:
        """All objects of a resource (in one namespace, or all when None), ordered by namespace/name."""
        db = self._live()
        if namespace is None:
            rows = db.execute(
                "SELECT body FROM objects WHERE resource = ? ORDER BY namespace, name", (resource,)
            )
        else:
            rows = db.execute(
                "SELECT body FROM objects WHERE resource = ? AND namespace = ? ORDER BY name",
                (resource, namespace),
            )
        # Decoded in one go with the cyclic GC paused: see semantics.decode_list for why.
        items = semantics.decode_list([body for (body,) in rows])
        return ListResult(items, self._revision)

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object, setting uid, resourceVersion, generation 1 and creationTimestamp."""
        key, request = semantics.decode_request(obj)
        db = self._live()
        if self._body(resource, key) is not None:
            raise AlreadyExistsError(f"{resource} {_describe(*key)} already exists")
        revision = self._revision + 1
        stored = semantics.created(request, revision=revision, uid=str(uuid.uuid4()), now=self._clock())
        self._commit(db, resource, key, semantics.Change("ADDED", stored))
        return stored

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status"] = ""
    ) -> JsonObject:
        """Replace an object; see ``Store.update`` for the resourceVersion, status and finalizer rules."""
        key, request = semantics.decode_request(obj)
        db = self._live()
        old = self._existing(resource, key)
        change = semantics.updated(old, request, revision=self._revision + 1, subresource=subresource)
        self._commit(db, resource, key, change)
        return change.object

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete an object, or mark it with a deletionTimestamp while it has finalizers."""
        db = self._live()
        key = semantics.ObjectKey(namespace, name)
        old = self._existing(resource, key)
        change = semantics.deleted(
            old, expected=resource_version, revision=self._revision + 1, now=self._clock()
        )
        if change is None:
            return old
        self._commit(db, resource, key, change)
        return change.object

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
        """End every open watch and close the file; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._hub.close()
            self._db.close()

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("store is closed")
        return self._db

    def _body(self, resource: str, key: semantics.ObjectKey) -> str | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE resource = ? AND namespace = ? AND name = ?",
            (resource, key.namespace, key.name),
        ).fetchone()
        return None if row is None else str(row[0])

    def _existing(self, resource: str, key: semantics.ObjectKey) -> JsonObject:
        body = self._body(resource, key)
        if body is None:
            raise NotFoundError(f"{resource} {_describe(*key)} not found")
        return _decode(body)

    def _commit(
        self, db: sqlite3.Connection, resource: str, key: semantics.ObjectKey, change: semantics.Change
    ) -> None:
        revision = self._revision + 1
        body = semantics.encode(change.object)
        started = time.perf_counter()
        commits: list[float] = []
        try:
            compact_to, log_bytes = self._write(db, resource, key, change, revision, body, commits.append)
        except sqlite3.Error as err:
            raise StoreError(f"write to {resource} {_describe(*key)} failed: {err}") from err
        if self._observe_write is not None:
            self._observe_write(time.perf_counter() - started, sum(commits))
        # Only after COMMIT returned: a failed write leaves the counters and watches untouched.
        self._revision = revision
        self._compacted = compact_to
        self._log_bytes = log_bytes
        self._hub.publish(LogEntry(revision, change.type, resource, key.namespace, body))

    def _write(
        self,
        db: sqlite3.Connection,
        resource: str,
        key: semantics.ObjectKey,
        change: semantics.Change,
        revision: int,
        body: str,
        on_commit: Callable[[float], None],
    ) -> tuple[int, int]:
        with _transaction(db, on_commit):
            if change.type == "DELETED":
                db.execute(
                    "DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?",
                    (resource, key.namespace, key.name),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO objects (resource, namespace, name, body) VALUES (?, ?, ?, ?)",
                    (resource, key.namespace, key.name, body),
                )
            db.execute(
                "INSERT INTO events (revision, resource, namespace, type, body) VALUES (?, ?, ?, ?, ?)",
                (revision, resource, key.namespace, change.type, body),
            )
            compact_to = self._compacted
            log_bytes = self._log_bytes + len(body)
            if revision - self._compacted >= self._history + self._batch:
                compact_to = revision - self._history
            if log_bytes > self._history_bytes:
                compact_to = max(compact_to, self._size_cut(db, log_bytes, revision))
            if compact_to > self._compacted:
                (removed,) = db.execute(
                    "SELECT COALESCE(SUM(length(body)), 0) FROM events WHERE revision <= ?",
                    (compact_to,),
                ).fetchone()
                db.execute("DELETE FROM events WHERE revision <= ?", (compact_to,))
                log_bytes -= removed
        return compact_to, log_bytes

    def _size_cut(self, db: sqlite3.Connection, log_bytes: int, revision: int) -> int:
        """The revision to compact to so that the log holds at most 90% of ``history_bytes``
        (a batch, so that the next writes pay nothing), keeping at least ``revision`` itself."""
        excess = log_bytes - self._history_bytes * 9 // 10
        cut = self._compacted
        rows = db.execute(
            "SELECT revision, length(body) FROM events WHERE revision < ? ORDER BY revision",
            (revision,),
        )
        for row_revision, size in rows:
            if excess <= 0:
                break
            excess -= size
            cut = row_revision
        return cut

    def _read_log(self, resource: str, namespace: str | None, after: int, upto: int, limit: int) -> LogPage:
        query = "SELECT revision, type, namespace, body FROM events WHERE revision > ? AND revision <= ?"
        query += " AND resource = ?"
        args: tuple[object, ...] = (after, upto, resource)
        if namespace is not None:
            query += " AND namespace = ?"
            args += (namespace,)
        rows = self._live().execute(query + " ORDER BY revision LIMIT ?", (*args, limit))
        return page_of((LogEntry(rev, kind, resource, ns, body) for rev, kind, ns, body in rows), limit)


@contextmanager
def _transaction(db: sqlite3.Connection, on_commit: Callable[[float], None] | None = None) -> Iterator[None]:
    # IMMEDIATE takes the write lock at BEGIN, so a locked file fails before any work is done.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        started = time.perf_counter()
        db.execute("COMMIT")
        if on_commit is not None:
            on_commit(time.perf_counter() - started)
    except BaseException:
        # A failed COMMIT (disk full, I/O error) may leave the transaction open; close it so the
        # next write can begin.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


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
