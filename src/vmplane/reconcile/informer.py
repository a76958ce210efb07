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

A ``transform`` runs on every object before it enters the cache, as client-go's ``SetTransform``.
:func:`strip_managed_fields` is client-go's ``TransformStripManagedFields``: no controller reads
field ownership, and it is a third to a half of a VMI's, an Event's and a ControllerRevision's JSON
and more of its decoded size (many small nested dicts); an update sent from such a copy loses
nothing, since a body without ``managedFields`` keeps the live entries. :func:`lean_copy` also
interns keys and short strings: ``json`` shares equal strings only within one document, so a
thousand VMIs otherwise hold a thousand copies of every key and of values such as ``"Running"``;
interned, a decoded VMI takes about half the memory, for some 25 us more per object received.

A ``compact`` informer holds each object as its compact JSON and decodes it on every read (each
caller gets its own copy): about a fifth of the memory of the decoded dicts, for the price of a
decode per read. It is meant for kinds read one key at a time and seldom listed, such as Events and
ControllerRevisions, not for the VMs and VMIs that every controller lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmplane.client.base import ObjectClient, UnavailableError
from vmplane.store.base import ExpiredError, JsonObject, StoreError

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "Informer",
    "Key",
    "Transform",
    "key_of",
    "lean_copy",
    "strip_managed_fields",
]

log = logging.getLogger(__name__)

Key = tuple[str, str]
Transform = Callable[[JsonObject], JsonObject]


def key_of(obj: JsonObject) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata", {})
    return (meta.get("namespace", "") or "", meta.get("name", ""))


def strip_managed_fields(obj: JsonObject) -> JsonObject:
    """``obj`` without ``metadata.managedFields`` (a shallow copy: ``obj`` may be shared)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    stripped = {k: v for k, v in metadata.items() if k != "managedFields"}
    return {**obj, "metadata": stripped}


#: Strings up to this length are interned by ``lean_copy``: names, phases, reasons, timestamps, not
#: messages or certificates.
SHORT_STRING = 64


def lean_copy(obj: JsonObject) -> JsonObject:
    """``obj`` without ``metadata.managedFields``, rebuilt with its keys and short strings interned."""
    lean: JsonObject = {}
    for key, value in obj.items():
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "managedFields"}
        lean[sys.intern(key)] = _interned(value)
    return lean


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHORT_STRING else value
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _Packed:
    """An object of a compact informer: its resourceVersion (for a relist to compare) and its JSON."""

    resource_version: Any
    text: str


def _pack(obj: JsonObject) -> _Packed:
    version = obj.get("metadata", {}).get("resourceVersion")
    return _Packed(version, json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def _unpack(entry: JsonObject | _Packed) -> JsonObject:
    if isinstance(entry, _Packed):
        decoded: JsonObject = json.loads(entry.text)
        return decoded
    return entry


def _version(entry: JsonObject | _Packed) -> Any:
    if isinstance(entry, _Packed):
        return entry.resource_version
    return entry["metadata"].get("resourceVersion")


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
        transform: Transform | None = None,
        compact: bool = False,
    ) -> None:
        self.resource = resource
        self._transform = transform
        self._compact = compact
        self._client = client
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._backoff = backoff
        self._cache: dict[Key, JsonObject | _Packed] = {}
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
        """The cached object (shared unless the informer is compact: do not mutate it)."""
        entry = self._cache.get((namespace, name))
        return None if entry is None else _unpack(entry)

    def list(self, namespace: str | None = None) -> list[JsonObject]:
        """Cached objects, in one namespace or all."""
        return [_unpack(e) for (ns, _), e in self._cache.items() if namespace is None or ns == namespace]

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

    def _cached(self, obj: JsonObject) -> JsonObject | _Packed:
        if self._transform is not None:
            obj = self._transform(obj)
        return _pack(obj) if self._compact else obj

    def _emit(self, key: Key) -> None:
        for handler in self._handlers:
            handler(key)

    async def _relist(self) -> None:
        listed = await self._client.list(
            self.resource, label_selector=self._label_selector, field_selector=self._field_selector
        )
        self.lists += 1
        fresh = {key_of(o): self._cached(o) for o in listed.items}
        for key in [k for k in self._cache if k not in fresh]:
            del self._cache[key]
            self._emit(key)
        for key, entry in fresh.items():
            old = self._cache.get(key)
            self._cache[key] = entry
            if old is None or _version(old) != _version(entry):
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
                self._cache[key] = self._cached(event.object)
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
