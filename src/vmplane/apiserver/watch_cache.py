"""The watch cache: each resource's objects in memory, kept current by the store's watch.

As kube-apiserver's cacher does, a ``WatchCache`` lists its resource once, then applies the store's
watch events, so that lists (and the initial state of a watch) are served from memory rather than
decoded from the store on every request. Each object is kept as its compact JSON
(``CachedObject.raw``), encoded once per change, so an unfiltered list response is spliced from
those bytes instead of being serialised again for every reader.

Consistency. ``revision`` is a revision R such that the cache holds exactly the resource's objects
as of R: it moves to each applied event's revision, and to the revision of each BOOKMARK from the
store's progress watch, which says that no change of this resource lies between. Every read is a
consistent read, like kube-apiserver's consistent list from cache: it takes the store's current
revision and waits until the cache has reached it, asking the watch for progress (the latest writes
may have been to other resources), then copies the items out with no ``await`` in between. So a
write through the API, or straight to the store, is in the next list (read-your-writes), and the
list's resourceVersion is one the store can watch from without missing or repeating a change.

When the store's watch expires (410), the cache lists again. If the cache fails, or does not catch
up within ``wait_timeout``, the read falls back to the store, as kube-apiserver falls back to etcd;
the next read after a failure starts a fresh cache. Written by hand: what it caches is this
project's Store protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from vmplane.store.base import ExpiredError, JsonObject, Store, StoreError, WatchEvent

__all__ = ["CachedObject", "Snapshot", "WatchCache", "WatchCaches", "encode"]

log = logging.getLogger(__name__)


def encode(obj: object) -> bytes:
    """Compact JSON, as every API response is written."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class CachedObject:
    """An object held as its compact JSON, with the namespace and name it sorts by.

    Only the bytes are kept: a decoded object costs about five times its JSON, for every object of
    every cached resource, while most reads (unfiltered lists and watches) send the bytes as they
    are. ``object`` decodes a fresh copy for the reads that look inside (selectors, tables).
    """

    raw: bytes
    key: tuple[str, str]

    @classmethod
    def of(cls, obj: JsonObject) -> CachedObject:
        return cls(encode(obj), _key(obj))

    @property
    def object(self) -> JsonObject:
        decoded: JsonObject = json.loads(self.raw)
        return decoded


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The objects of a resource (in one namespace, or all) as of ``resource_version``, by namespace/name."""

    items: list[CachedObject]
    resource_version: int


class WatchCache:
    """One resource's objects, kept by a background list+watch; ``start`` it, then read ``snapshot``."""

    def __init__(self, *, store: Store, resource: str, wait_timeout: float) -> None:
        self.resource = resource
        self._store = store
        self._wait_timeout = wait_timeout
        self._objects: dict[str, dict[str, CachedObject]] = {}  # namespace -> name -> object
        # Sorted keys, rebuilt on the next read after a create or delete (not after a modify).
        self._names: dict[str, list[str]] = {}
        self._namespaces: list[str] | None = None
        self.revision = -1  # nothing listed yet
        self._advanced = asyncio.Event()  # set, and replaced, when the revision moves
        self._waiting = 0
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"watch-cache-{self.resource}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._forget()

    def _forget(self) -> None:
        # Release the objects now rather than with the cache: a finished task's traceback holds its
        # frames, and through them this cache, in a cycle that only the cyclic collector frees.
        self._objects, self._names, self._namespaces = {}, {}, None

    async def snapshot(self, namespace: str | None) -> Snapshot:
        """The current objects (read-your-writes), from memory or, if the cache cannot say, the store."""
        target = await self._store.current_revision()
        try:
            async with asyncio.timeout(self._wait_timeout):
                await self._reach(target)
        except (TimeoutError, StoreError) as err:
            log.warning(
                "watch cache of %s: %s; listing from the store", self.resource, str(err) or "timed out"
            )
            listed = await self._store.list(self.resource, namespace)
            return Snapshot([CachedObject.of(obj) for obj in listed.items], listed.resource_version)
        return Snapshot(self._items(namespace), self.revision)

    async def _reach(self, target: int) -> None:
        asked = False
        self._waiting += 1
        try:
            while True:
                if self._failure is not None:  # its objects are gone
                    raise StoreError(f"watch cache failed: {self._failure}") from self._failure
                if self.revision >= target:
                    return
                if not asked and self.revision >= 0:
                    # The watch answers once it has delivered what it holds, so this covers writes to
                    # other resources too. A request made before the watch began is not lost: a
                    # progress watch reports once it has caught up anyway.
                    await self._store.request_progress()
                    asked = True
                    continue
                await self._advanced.wait()
        finally:
            self._waiting -= 1

    def _items(self, namespace: str | None) -> list[CachedObject]:
        if namespace is not None:
            return self._sorted(namespace)
        if self._namespaces is None:
            self._namespaces = sorted(self._objects)
        items: list[CachedObject] = []
        for each in self._namespaces:
            items += self._sorted(each)
        return items

    def _sorted(self, namespace: str) -> list[CachedObject]:
        objects = self._objects.get(namespace)
        if not objects:
            return []
        names = self._names.get(namespace)
        if names is None:
            names = self._names[namespace] = sorted(objects)
        return [objects[name] for name in names]

    async def _run(self) -> None:
        try:
            while True:
                revision = await self._fill()
                try:
                    events = self._store.watch(self.resource, since=revision, progress=True)
                    async for event in events:
                        self._apply(event)
                except ExpiredError:
                    log.info("watch cache of %s fell behind the store; listing again", self.resource)
                    continue
                raise StoreError("the store ended the watch (closed)")
        except Exception as err:  # readers fall back to the store and the next one starts afresh
            self._failure = err
            self._forget()
            self._advance()

    async def _fill(self) -> int:
        """Replace the contents with a fresh list; its revision, which the watch continues from."""
        listed = await self._store.list(self.resource)
        objects: dict[str, dict[str, CachedObject]] = {}
        for obj in listed.items:
            namespace, name = _key(obj)
            objects.setdefault(namespace, {})[name] = CachedObject.of(obj)
        self._objects, self._names, self._namespaces = objects, {}, None
        self.revision = max(self.revision, listed.resource_version)
        self._advance()
        return listed.resource_version

    def _apply(self, event: WatchEvent) -> None:
        if event.type != "BOOKMARK":
            namespace, name = _key(event.object)
            objects = self._objects.get(namespace)
            if event.type == "DELETED":
                if objects is not None and objects.pop(name, None) is not None:
                    self._names.pop(namespace, None)
                    if not objects:
                        del self._objects[namespace]
                        self._namespaces = None
            else:
                if objects is None:
                    objects = self._objects[namespace] = {}
                    self._namespaces = None
                if name not in objects:
                    self._names.pop(namespace, None)
                objects[name] = CachedObject.of(event.object)
        self.revision = max(self.revision, event.resource_version)
        self._advance()

    def _advance(self) -> None:
        if self._waiting:
            self._advanced.set()
            self._advanced = asyncio.Event()


def _key(obj: JsonObject) -> tuple[str, str]:
    metadata = obj["metadata"]
    return metadata.get("namespace") or "", metadata["name"]


class WatchCaches:
    """A watch cache per resource, started by the first read of that resource."""

    def __init__(self, *, store: Store, wait_timeout: float = 10.0) -> None:
        self._store = store
        self._wait_timeout = wait_timeout
        self._caches: dict[str, WatchCache] = {}

    async def snapshot(self, resource: str, namespace: str | None) -> Snapshot:
        """The current objects of ``resource`` (see ``WatchCache.snapshot``)."""
        return await self.of(resource).snapshot(namespace)

    def of(self, resource: str) -> WatchCache:
        cache = self._caches.get(resource)
        if cache is None or cache.failed:
            cache = self._caches[resource] = WatchCache(
                store=self._store, resource=resource, wait_timeout=self._wait_timeout
            )
            cache.start()
        return cache

    async def close(self) -> None:
        """Stop every cache's watch."""
        caches, self._caches = list(self._caches.values()), {}
        for cache in caches:
            await cache.stop()
