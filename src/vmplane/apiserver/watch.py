"""``?watch=1``: a chunked stream of ``{"type", "object"}`` lines, one per event.

Semantics follow kube-apiserver: without a resourceVersion (or with ``0``) the stream starts with
an ADDED event per existing object; with one, it replays every change after it, or answers a
single ``ERROR`` event carrying a 410 Expired ``Status`` when that version is no longer retained.
Selectors are applied to each event, and an object that stops (starts) matching is sent as
DELETED (ADDED), as the watch cache does. BOOKMARK events come every ``bookmark_interval`` when
asked for, and the stream ends after ``timeoutSeconds``.

The initial state comes from the watch cache's consistent snapshot, and the stream from the store's
watch after that snapshot's revision, so nothing is missed or repeated between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext, dumps, query_bool, wants_table
from vmplane.apiserver.freshness import wait_for_revision
from vmplane.apiserver.list_options import list_options
from vmplane.apiserver.listing import Selectors, request_selectors, selected
from vmplane.apiserver.routing import Target
from vmplane.apiserver.tables import build_table
from vmplane.apiserver.watch_cache import CachedObject
from vmplane.apiserver.watch_outbox import Outbox, SlowWatcherError
from vmplane.store.base import ExpiredError, JsonObject, WatchEvent

__all__ = ["serve_watch", "translate"]

_Key = tuple[str, str]
log = logging.getLogger(__name__)


def _key(obj: JsonObject) -> _Key:
    metadata = obj.get("metadata", {})
    return metadata.get("namespace", ""), metadata.get("name", "")


def translate(event: WatchEvent, selectors: Selectors, matching: set[_Key]) -> str | None:
    """The event type to send for ``event`` under ``selectors`` (None: not sent); updates ``matching``."""
    key = _key(event.object)
    was = key in matching
    now = event.type != "DELETED" and selected(selectors, event.object)
    if now:
        matching.add(key)
    else:
        matching.discard(key)
    if event.type == "DELETED":
        return "DELETED" if was or selected(selectors, event.object) else None
    if now:
        return "MODIFIED" if was and event.type == "MODIFIED" else "ADDED"
    return "DELETED" if was else None


def _timeout(ctx: ApiContext, request: web.Request) -> float:
    raw = request.query.get("timeoutSeconds", "")
    if raw:
        try:
            return max(0.0, float(int(raw)))
        except ValueError as err:
            raise st.bad_request(f"timeoutSeconds: Invalid value: {raw!r}") from err
    base = ctx.settings.default_watch_timeout
    return base + random.random() * base  # kube-apiserver spreads watch ends the same way


class _Stream:
    """Writes events as lines, as Tables when the client asked for them, through a bounded outbox."""

    def __init__(self, ctx: ApiContext, target: Target, outbox: Outbox, table: bool) -> None:
        self.ctx, self.target, self.outbox, self.table = ctx, target, outbox, table

    def send(self, event_type: str, obj: JsonObject) -> None:
        """An event from the store's watch."""
        self.outbox.offer(self._line(event_type, obj))

    async def send_initial(self, item: CachedObject) -> None:
        """An object of the watch's initial state, sent before the store's watch is read."""
        line = (
            self._line("ADDED", item.object)
            if self.table
            else b'{"type":"ADDED","object":' + item.raw + b"}\n"
        )
        await self.outbox.put(line)

    def _line(self, event_type: str, obj: JsonObject) -> bytes:
        body: Any = obj
        if self.table and event_type in ("ADDED", "MODIFIED", "DELETED"):
            rv = obj.get("metadata", {}).get("resourceVersion", "")
            body = build_table(
                self.target.resource_type, [obj], now=self.ctx.clock(), list_metadata={"resourceVersion": rv}
            )
        return dumps({"type": event_type, "object": body}) + b"\n"

    def bookmark(self, resource_version: int, *, initial_events_end: bool = False) -> None:
        """A BOOKMARK at ``resource_version``; ``initial_events_end`` ends a watch-list's initial state."""
        resource_type = self.target.resource_type
        metadata: JsonObject = {"resourceVersion": str(resource_version)}
        if initial_events_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": resource_type.kind, "apiVersion": resource_type.api_version, "metadata": metadata}
        self.outbox.offer(dumps({"type": "BOOKMARK", "object": obj}) + b"\n")


async def serve_watch(ctx: ApiContext, target: Target, request: web.Request) -> web.StreamResponse:
    resource_type = target.resource_type
    selectors = request_selectors(target, request)
    timeout = _timeout(ctx, request)
    bookmarks = query_bool(request.query.get("allowWatchBookmarks"))
    options = list_options(request.query, watch=True)
    filtering = bool(selectors[0] or selectors[1])
    initial: list[CachedObject] = []
    matching: set[_Key] = set()
    if options.resource_version:
        await wait_for_revision(ctx.store, options.resource_version)
    if not options.resource_version or options.send_initial_events:
        snapshot = await ctx.caches.snapshot(resource_type.store_resource, target.namespace)
        since = snapshot.resource_version
        initial = [item for item in snapshot.items if not filtering or selected(selectors, item.object)]
        matching = {item.key for item in initial}
    else:
        since = options.resource_version
        if filtering:
            current = await ctx.caches.snapshot(resource_type.store_resource, target.namespace)
            matching = {item.key for item in current.items if selected(selectors, item.object)}
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    outbox = Outbox(response, limit=ctx.settings.watch_buffer_bytes, grace=ctx.settings.slow_watcher_grace)
    stream = _Stream(ctx, target, outbox, wants_table(request.headers.get("Accept")))
    events = ctx.store.watch(resource_type.store_resource, target.namespace, since=since)
    try:
        for item in initial:
            await stream.send_initial(item)
        if options.send_initial_events:
            stream.bookmark(since, initial_events_end=True)
        try:
            await _pump(
                ctx, stream, events, since, selectors if filtering else None, matching, timeout, bookmarks
            )
        except ExpiredError:
            revision = await ctx.store.current_revision()
            gone = st.expired(f"too old resource version: {since} ({revision})")
            await outbox.put(dumps({"type": "ERROR", "object": gone.status}) + b"\n")
        await outbox.flush()
    except SlowWatcherError as err:
        # As kube-apiserver's cacheWatcher: the client re-lists and watches again.
        log.warning("closing watch of %s: %s", resource_type.store_resource, err)
        await outbox.close()
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        await outbox.close()
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _pump(
    ctx: ApiContext,
    stream: _Stream,
    events: AsyncIterator[WatchEvent],
    since: int,
    selectors: Selectors | None,
    matching: set[_Key],
    timeout: float,
    bookmarks: bool,
) -> None:
    deadline = time.monotonic() + timeout
    interval = ctx.settings.bookmark_interval
    next_bookmark = time.monotonic() + interval
    last_rv = since
    iterator = aiter(events)
    pending: asyncio.Task[WatchEvent] | None = None
    stalled = asyncio.ensure_future(stream.outbox.stalled())
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait(
                {pending, stalled}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if stalled in done:
                raise stalled.result()
            if not done:
                if bookmarks and time.monotonic() >= next_bookmark:
                    stream.bookmark(last_rv)
                    next_bookmark = time.monotonic() + interval
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            last_rv = max(last_rv, event.resource_version)
            event_type = event.type if selectors is None else translate(event, selectors, matching)
            if event_type is not None:
                stream.send(event_type, event.object)
    finally:
        for task in (pending, stalled):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
