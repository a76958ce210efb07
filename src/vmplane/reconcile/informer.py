"""An informer: a local cache of one resource, kept by a reflector, with change handlers.

The reflector behaves as client-go's: list, then watch from the list's resourceVersion; when a watch
ends normally (the server's watch timeout) or its connection breaks (the API server restarting),
watch again from the last resourceVersion seen, so a restart costs no list; only a 410 Gone (that
version is no longer retained) or another error makes it list again. Every retry after an error or a
410 waits a doubling backoff (a history that expires as fast as it is listed must not spin). Errors
are logged and counted (``errors``), lists counted (``lists``), and ``synced`` says whether the
first list has filled the cache.

Handlers receive the object's key alone, as client-go's work queues do, never the event or the object:
whatever they need they read from the cache (``get``, None once deleted), so everything downstream is
level-triggered and nothing holds an object the cache has moved past.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from vmplane.client.base import ObjectClient, UnavailableError
from vmplane.store.base import ExpiredError, JsonObject, StoreError

__all__ = ["DEFAULT_BACKOFF", "Backoff", "Informer", "Key", "key_of"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


def key_of(obj: JsonObject) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata", {})
    return (meta.get("namespace", "") or "", meta.get("name", ""))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds before the first retry after an error, doubling per consecutive error up to ``maximum``."""

    initial: float = 0.2
    maximum: float = 10.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, failures - 1)))


DEFAULT_BACKOFF = Backoff()


class Informer:
    """Cache of one resource (optionally narrowed by selectors) kept current by list+watch."""

    def __init__(
        self,
        client: ObjectClient,
        resource: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.resource = resource
        self._client = client
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._backoff = backoff
        self._cache: dict[Key, JsonObject] = {}
        self._handlers: list[Callable[[Key], None]] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How many lists this informer made, and how many errors it met (logged, then retried).
        self.lists = 0
        self.errors = 0
        #: The newest resourceVersion this informer has seen (its list's, or its watch's latest).
        self.resource_version = 0

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def on_change(self, handler: Callable[[Key], None]) -> None:
        """Call ``handler(key)`` after every change of that key in the cache."""
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> JsonObject | None:
        """The cached object (shared: do not mutate it)."""
        return self._cache.get((namespace, name))

    def list(self, namespace: str | None = None) -> list[JsonObject]:
        """Cached objects, in one namespace or all."""
        return [o for (ns, _), o in self._cache.items() if namespace is None or ns == namespace]

    def start(self) -> None:
        """Begin list+watch in the background (once: a shared informer is started by each user)."""
        if self._task is None:
            name = f"informer-{self.resource}"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def wait_synced(self) -> None:
        """Return once the first list has filled the cache."""
        await self._synced.wait()

    async def stop(self) -> None:
        """Stop watching (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _emit(self, key: Key) -> None:
        for handler in self._handlers:
            handler(key)

    async def _relist(self) -> None:
        listed = await self._client.list(
            self.resource, label_selector=self._label_selector, field_selector=self._field_selector
        )
        self.lists += 1
        fresh = {key_of(o): o for o in listed.items}
        for key in [k for k in self._cache if k not in fresh]:
            del self._cache[key]
            self._emit(key)
        for key, obj in fresh.items():
            old = self._cache.get(key)
            self._cache[key] = obj
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._emit(key)
        self.resource_version = listed.resource_version
        self._synced.set()

    async def _watch(self) -> None:
        """Apply one watch stream's events until the server ends it."""
        async for event in self._client.watch(
            self.resource,
            since=self.resource_version,
            label_selector=self._label_selector,
            field_selector=self._field_selector,
        ):
            self.resource_version = max(self.resource_version, event.resource_version)
            if event.type == "BOOKMARK":
                continue
            key = key_of(event.object)
            if event.type == "DELETED":
                self._cache.pop(key, None)
                self._emit(key)
            else:
                self._cache[key] = event.object
                self._emit(key)

    async def _run(self) -> None:
        must_list, failures = True, 0
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                await self._watch()
                failures = 0
                continue
            except ExpiredError:
                log.info("watch of %s from %d expired; listing again", self.resource, self.resource_version)
                must_list = True
            except UnavailableError as err:
                # The API server is unreachable or restarting: watch again from where we were.
                self._count_error("cannot reach the API server", err)
            except StoreError as err:
                self._count_error("list/watch failed", err)
                must_list = True
            failures += 1
            await asyncio.sleep(self._backoff.delay(failures))

    def _count_error(self, what: str, err: Exception) -> None:
        self.errors += 1
        log.warning("informer of %s: %s: %s (error %d)", self.resource, what, err, self.errors)
