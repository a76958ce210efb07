"""Watch fan-out shared by the Store backends: replay from an event log, then stream live events.

Every backend keeps a dense event log (one entry per revision) and publishes each committed entry to
a ``WatchHub``. ``stream`` turns those two into the Store's watch contract: every change after
``since`` exactly once and in order. The hand-over from replay to live is race-free because the
subscription is taken and the log's head read with no ``await`` in between, so every later write
reaches the subscription, and anything the subscription repeats from the replay is skipped by
revision.

A subscriber that falls ``LIVE_QUEUE_LIMIT`` events or ``LIVE_QUEUE_BYTES`` of bodies behind is not
allowed to grow memory without bound: its queue is dropped and it goes back to replaying from the
log, which holds the same events. Only if the log has been compacted past it meanwhile does it end
with ExpiredError, like a Kubernetes watch that gets 410 Gone.

A watch opened with ``progress`` also reports progress, as etcd's progress notify does: when it has
nothing pending it is level with the log's head (every write publishes before the head moves on, with
no ``await`` in between), so it can say so with a BOOKMARK at the head. It does once after catching
up, and again whenever ``WatchHub.request_progress`` asks; a request that arrives while it replays or
re-subscribes is answered once it has caught up, so none is lost.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from vmplane.store.base import ExpiredError, StoreError, WatchEvent, WatchEventType

__all__ = [
    "DEFAULT_HISTORY_BYTES",
    "LIVE_QUEUE_BYTES",
    "LIVE_QUEUE_LIMIT",
    "REPLAY_PAGE",
    "REPLAY_PAGE_BYTES",
    "LogEntry",
    "LogPage",
    "LogReader",
    "WatchHub",
    "page_of",
    "stream",
]

LIVE_QUEUE_LIMIT = 10_000
# Bodies are up to the API's 3 MiB: counting events alone would let one watcher pin gigabytes.
LIVE_QUEUE_BYTES = 64 * 1024 * 1024
REPLAY_PAGE = 1_000
REPLAY_PAGE_BYTES = 8 * 1024 * 1024
# Both backends bound their log by size as well as count: 100,000 changes of large objects would
# otherwise be gigabytes. 128 MiB keeps e.g. 30,000 changes of 4 KiB VMs replayable.
DEFAULT_HISTORY_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One committed change as the log holds it: JSON text, decoded afresh for each delivery."""

    revision: int
    type: WatchEventType
    resource: str
    namespace: str
    body: str

    def to_event(self) -> WatchEvent:
        """A WatchEvent with its own copy of the object."""
        return WatchEvent(self.type, json.loads(self.body), self.revision)

    @property
    def size(self) -> int:
        """The body's length, as what it costs to hold (characters: ``body`` is text)."""
        return len(self.body)


def page_of(entries: Iterable[LogEntry], limit: int) -> LogPage:
    """The first entries, at most ``limit`` of them and, after the first, REPLAY_PAGE_BYTES of bodies."""
    page: LogPage = []
    size = 0
    for entry in entries:
        size += entry.size
        if page and (len(page) >= limit or size > REPLAY_PAGE_BYTES):
            break
        page.append(entry)
    return page


LogPage = list[LogEntry]
# read(resource, namespace, after, upto, limit): log entries of that resource (and namespace, unless
# None) with after < revision <= upto, oldest first, at most ``limit`` of them and (past the first)
# at most REPLAY_PAGE_BYTES of bodies; an empty page means there are none.
LogReader = Callable[[str, "str | None", int, int, int], LogPage]


class _Subscriber:
    __slots__ = (
        "closed",
        "namespace",
        "overflowed",
        "pending",
        "pending_bytes",
        "progress",
        "progress_requested",
        "resource",
        "wakeup",
    )

    def __init__(self, resource: str, namespace: str | None, *, progress: bool) -> None:
        self.resource = resource
        self.namespace = namespace
        self.pending: deque[LogEntry] = deque()
        self.pending_bytes = 0
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.progress = progress
        self.progress_requested = False

    def offer(self, entry: LogEntry, limit: int) -> None:
        if self.overflowed or entry.resource != self.resource:
            return
        if self.namespace is not None and entry.namespace != self.namespace:
            return
        if len(self.pending) >= limit or self.pending_bytes + entry.size > LIVE_QUEUE_BYTES:
            self.pending.clear()
            self.pending_bytes = 0
            self.overflowed = True
        else:
            self.pending.append(entry)
            self.pending_bytes += entry.size
        self.wakeup.set()

    def take(self) -> LogEntry:
        entry = self.pending.popleft()
        self.pending_bytes -= entry.size
        return entry

    def end(self) -> None:
        self.closed = True
        self.wakeup.set()

    def request_progress(self) -> None:
        if self.progress:
            self.progress_requested = True
            self.wakeup.set()


class WatchHub:
    """In-process fan-out of committed log entries to open watches."""

    def __init__(self, *, limit: int | None = None) -> None:
        self._limit = LIVE_QUEUE_LIMIT if limit is None else limit
        self._subscribers: set[_Subscriber] = set()
        self.closed = False

    def publish(self, entry: LogEntry) -> None:
        """Hand a committed entry to every matching watch; never blocks."""
        for subscriber in self._subscribers:
            subscriber.offer(entry, self._limit)

    def request_progress(self) -> None:
        """Ask every watch opened with ``progress`` for a BOOKMARK once it has caught up."""
        for subscriber in self._subscribers:
            subscriber.request_progress()

    def close(self) -> None:
        """End every open watch after it has delivered what it already holds."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.end()
        self._subscribers.clear()

    def _subscribe(self, resource: str, namespace: str | None, *, progress: bool) -> _Subscriber:
        subscriber = _Subscriber(resource, namespace, progress=progress)
        self._subscribers.add(subscriber)
        return subscriber

    def _unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)


async def stream(
    *,
    hub: WatchHub,
    read: LogReader,
    head: Callable[[], int],
    compacted: Callable[[], int],
    resource: str,
    namespace: str | None,
    since: int,
    progress: bool = False,
) -> AsyncIterator[WatchEvent]:
    """The Store.watch contract over a backend's log (``read``, ``head``, ``compacted`` revisions).

    ``read`` must not await: the completeness check below relies on no compaction running between
    the read and the check.
    """
    last = since
    report = progress  # a progress watch reports once it has caught up, then when asked
    while True:
        if hub.closed:
            raise StoreError("store is closed")
        _check_retained(last, compacted())
        subscriber = hub._subscribe(resource, namespace, progress=progress)
        subscriber.progress_requested = report
        try:
            cut = head()
            while last < cut:
                if subscriber.closed:
                    return  # the store closed while the consumer held a replayed event
                page = read(resource, namespace, last, cut, REPLAY_PAGE)
                # A compaction while we were suspended in a yield may have removed entries after
                # `last`; the page is only complete if it did not.
                _check_retained(last, compacted())
                for entry in page:
                    yield entry.to_event()
                    last = entry.revision
                if not page:
                    last = cut  # the rest of (last, cut] belongs to other resources or namespaces
            while True:
                if subscriber.pending:
                    entry = subscriber.take()
                    if entry.revision > last:
                        yield entry.to_event()
                        last = entry.revision
                elif subscriber.closed:
                    return
                elif subscriber.overflowed:
                    break  # resubscribe and catch up from the log
                elif subscriber.progress_requested:
                    # Nothing pending: every change up to the head has been delivered.
                    subscriber.progress_requested = False
                    yield WatchEvent("BOOKMARK", {}, head())
                else:
                    subscriber.wakeup.clear()
                    await subscriber.wakeup.wait()
        finally:
            report = subscriber.progress_requested  # carried over a re-subscription
            hub._unsubscribe(subscriber)


def _check_retained(since: int, compacted: int) -> None:
    if since < compacted:
        raise ExpiredError(f"too old resource version: {since} (oldest retained change is {compacted + 1})")
