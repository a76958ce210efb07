"""An informer: a local cache of one resource, fed by the store's list+watch, with change handlers.

Handlers receive only the object's key, never the event, so everything downstream is level-triggered.
When the watch falls too far behind (410 Gone), the informer lists again and diffs its cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from vmplane.store.base import ExpiredError, JsonObject, Store

__all__ = ["Informer", "Key", "key_of"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


def key_of(obj: JsonObject) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata", {})
    return (meta.get("namespace", "") or "", meta.get("name", ""))


class Informer:
    """Cache of one resource kept current by a watch; ``on_change`` handlers get keys."""

    def __init__(self, store: Store, resource: str) -> None:
        self.resource = resource
        self._store = store
        self._cache: dict[Key, JsonObject] = {}
        self._handlers: list[Callable[[Key, JsonObject | None], None]] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_change(self, handler: Callable[[Key, JsonObject | None], None]) -> None:
        """Call ``handler(key, object_or_None_if_deleted)`` after every cache change."""
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> JsonObject | None:
        """The cached object (shared: do not mutate it)."""
        return self._cache.get((namespace, name))

    def list(self, namespace: str | None = None) -> list[JsonObject]:
        """Cached objects, in one namespace or all."""
        return [o for (ns, _), o in self._cache.items() if namespace is None or ns == namespace]

    def start(self) -> None:
        """Begin list+watch in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer-{self.resource}")

    async def wait_synced(self) -> None:
        """Return once the first list has filled the cache."""
        await self._synced.wait()

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _emit(self, key: Key, obj: JsonObject | None) -> None:
        for handler in self._handlers:
            handler(key, obj)

    async def _relist(self) -> int:
        listed = await self._store.list(self.resource)
        fresh = {key_of(o): o for o in listed.items}
        for key in [k for k in self._cache if k not in fresh]:
            del self._cache[key]
            self._emit(key, None)
        for key, obj in fresh.items():
            old = self._cache.get(key)
            self._cache[key] = obj
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._emit(key, obj)
        self._synced.set()
        return listed.resource_version

    async def _run(self) -> None:
        while True:
            revision = await self._relist()
            try:
                async for event in self._store.watch(self.resource, since=revision):
                    key = key_of(event.object)
                    if event.type == "DELETED":
                        self._cache.pop(key, None)
                        self._emit(key, None)
                    else:
                        self._cache[key] = event.object
                        self._emit(key, event.object)
            except ExpiredError:
                log.info("watch on %s expired; listing again", self.resource)
                continue
            return
