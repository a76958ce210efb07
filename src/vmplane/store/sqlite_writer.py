"""SqliteStore's writer thread: every commit off the event loop, waiting writes committed together.

The event loop decides each write (revision, body) and hands it over; this thread takes whatever has
queued up, writes it in one transaction and commits once, so one fsync (``synchronous=FULL``) makes a
whole batch durable, as etcd batches proposals into one WAL fsync. A batch is committed in the order
it was handed over, so revisions stay dense and ordered; the loop learns of each batch through
``call_soon_threadsafe`` on the loop of its writes, in commit order, and only then publishes the
batch to watches and acknowledges its writes.

If a commit fails, nothing of its batch is stored. Writes handed over after it were decided on top
of the failed ones, so they are refused too until the loop, having reset its view to the last
commit, sends ``reset``; writes after that are taken again.

Compaction (the history bound of ``SqliteStore.open``) runs here, in the transaction of the batch
that passes the bound, so it is as durable as the batch and costs the loop nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from vmplane.store.base import WatchEventType

__all__ = ["MAX_BATCH", "Batch", "GroupCommitter", "Write", "transaction"]

# A bound on one transaction, so that a flood of writes still gets acknowledged in steps.
MAX_BATCH = 1_000
# Compaction deletes old log rows in batches of up to this many, so that most commits pay nothing.
_MAX_COMPACTION_BATCH = 1_000


@dataclass(eq=False, slots=True)
class Write:
    """One decided write: its revision, where it goes, the event type and the stored JSON text.

    ``done`` is resolved on its loop once the write is durable (or fails).
    """

    revision: int
    resource: str
    namespace: str
    name: str
    type: WatchEventType
    body: str
    done: asyncio.Future[None] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Batch:
    """Writes committed together, the log's compaction point after them, and the seconds the
    transaction took in all and in its COMMIT (the fsync)."""

    writes: list[Write]
    compacted: int
    seconds: float
    commit_seconds: float


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_UPSERT = "INSERT OR REPLACE INTO objects (resource, namespace, name, body) VALUES (?, ?, ?, ?)"
_RESET = _Marker("reset")
_STOP = _Marker("stop")


class GroupCommitter:
    """The thread that owns the writing connection ``db``.

    ``committed(batch)`` and ``failed(writes, error, commit_failed)`` are called on the writes' loop;
    ``commit_failed`` is False for writes refused because an earlier commit failed.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        history: int,
        history_bytes: int,
        committed: Callable[[Batch], None],
        failed: Callable[[list[Write], BaseException, bool], None],
    ) -> None:
        self._db = db
        self._history = history
        self._history_bytes = history_bytes
        self._compaction_batch = max(1, min(_MAX_COMPACTION_BATCH, history // 10))
        (self._log_bytes,) = db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM events").fetchone()
        (first,) = db.execute("SELECT MIN(revision) FROM events").fetchone()
        self._compacted: int = first - 1 if first is not None else 0
        self._committed = committed
        self._failed = failed
        self.commits = 0  # transactions committed, each one fsync (read by tests and benchmarks)
        self._queue: queue.SimpleQueue[Write | _Marker] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> None:
        """Queue a write; it is committed after every write submitted before it."""
        self._queue.put(write)

    def reset(self) -> None:
        """The loop has reset its view after a failed commit: take writes again from here."""
        self._queue.put(_RESET)

    def stop(self) -> None:
        """Commit what is queued, then close the connection and end the thread."""
        self._queue.put(_STOP)

    def join(self) -> None:
        """Wait for the thread to end (after ``stop``)."""
        self._thread.join()

    def _run(self) -> None:
        refusing: BaseException | None = None
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes: list[Write] = []
            refused: list[Write] = []
            # The error the refused writes are refused for: a reset later in this batch ends the
            # refusal for what follows it, not for what came before.
            refused_for: BaseException | None = None
            for item in items:
                if item is _RESET:
                    refusing = None
                elif item is _STOP:
                    stop = True
                elif isinstance(item, Write):
                    if refusing is not None:
                        refused.append(item)
                        refused_for = refusing
                    else:
                        writes.append(item)
            if refused_for is not None:
                self._deliver(refused, self._failed, refused, refused_for, False)
            if writes:
                started = time.perf_counter()
                try:
                    compacted, log_bytes, commit_seconds = self._commit(writes)
                except sqlite3.Error as err:
                    refusing = err
                    self._deliver(writes, self._failed, writes, err, True)
                else:
                    self.commits += 1
                    self._compacted, self._log_bytes = compacted, log_bytes
                    seconds = time.perf_counter() - started
                    self._deliver(writes, self._committed, Batch(writes, compacted, seconds, commit_seconds))
        self._db.close()

    @staticmethod
    def _deliver(writes: list[Write], callback: Callable[..., None], *args: object) -> None:
        # A closed loop (RuntimeError) has nobody waiting for these writes any more.
        with contextlib.suppress(RuntimeError):
            writes[0].done.get_loop().call_soon_threadsafe(callback, *args)

    def _commit(self, writes: list[Write]) -> tuple[int, int, float]:
        """Write the batch in one transaction: the compaction point, the log's size, COMMIT seconds."""
        db = self._db
        commit: list[float] = []
        with transaction(db, commit.append):
            for write in writes:
                key = (write.resource, write.namespace, write.name)
                if write.type == "DELETED":
                    db.execute("DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?", key)
                else:
                    db.execute(_UPSERT, (*key, write.body))
            db.executemany(
                "INSERT INTO events (revision, resource, namespace, type, body) VALUES (?, ?, ?, ?, ?)",
                [(w.revision, w.resource, w.namespace, w.type, w.body) for w in writes],
            )
            compacted, log_bytes = self._compact(db, writes[-1].revision, sum(len(w.body) for w in writes))
        return compacted, log_bytes, sum(commit)

    def _compact(self, db: sqlite3.Connection, revision: int, added: int) -> tuple[int, int]:
        compact_to = self._compacted
        log_bytes = self._log_bytes + added
        if revision - self._compacted >= self._history + self._compaction_batch:
            compact_to = revision - self._history
        if log_bytes > self._history_bytes:
            compact_to = max(compact_to, self._size_cut(db, log_bytes, revision))
        if compact_to > self._compacted:
            (removed,) = db.execute(
                "SELECT COALESCE(SUM(length(body)), 0) FROM events WHERE revision <= ?", (compact_to,)
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
            "SELECT revision, length(body) FROM events WHERE revision < ? ORDER BY revision", (revision,)
        )
        for row_revision, size in rows:
            if excess <= 0:
                break
            excess -= size
            cut = row_revision
        return cut


@contextmanager
def transaction(db: sqlite3.Connection, on_commit: Callable[[float], None] | None = None) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; ``on_commit`` is told the COMMIT's seconds."""
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
