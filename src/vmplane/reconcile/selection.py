"""A selection: the objects of an informer's cache that a label and field selector admit.

A process that already caches every object of a resource (``vmplane serve``: its API server's
admission and its controllers watch every VMI) would keep a second copy of each object it selects
with a watch of its own (the node agent's VMIs of this node), and decode every change twice. A
``Selection`` holds no objects: it reads the full informer's cache through the selector, and tells
its handlers of a key that enters, changes in or leaves the selection, as the API server's selected
watch tells of it (a change that takes an object out of a selected watch arrives as a deletion; here
``get`` then returns None).

A separate process that watches only its own share (``vmplane agent``) keeps a selected watch of its
own instead: it has no full cache to read from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from vmplane.api.selectors import matches_fields, matches_labels, parse_field_selector, parse_label_selector
from vmplane.reconcile.informer import Informer, Key, key_of
from vmplane.store.base import JsonObject

__all__ = ["Cache", "Selection"]


class Cache(Protocol):
    """What readers of an informer use: an ``Informer`` or a ``Selection`` of one."""

    @property
    def resource(self) -> str: ...

    @property
    def synced(self) -> bool: ...

    def get(self, namespace: str, name: str) -> JsonObject | None: ...

    def list(self, namespace: str | None = None) -> list[JsonObject]: ...

    def on_change(self, handler: Callable[[Key], None]) -> None: ...

    def start(self) -> None: ...

    async def wait_synced(self) -> None: ...

    async def stop(self) -> None: ...


class Selection:
    """The objects of ``source`` that ``label_selector`` and ``field_selector`` admit.

    Raises ``api.selectors.SelectorError`` for a selector that does not parse."""

    def __init__(self, source: Informer, *, label_selector: str = "", field_selector: str = "") -> None:
        self._source = source
        self._labels = parse_label_selector(label_selector)
        self._fields = parse_field_selector(field_selector, any_field=True)
        self._handlers: list[Callable[[Key], None]] = []
        # The keys admitted when last seen: a change that takes one out must still be told.
        self._admitted = {key_of(obj) for obj in source.list() if self._admits(obj)}
        source.on_change(self._changed)

    @property
    def resource(self) -> str:
        return self._source.resource

    @property
    def synced(self) -> bool:
        return self._source.synced

    def _admits(self, obj: JsonObject) -> bool:
        return matches_fields(self._fields, obj) and matches_labels(self._labels, obj)

    def get(self, namespace: str, name: str) -> JsonObject | None:
        """The object if the selection admits it (the source's shared copy: do not mutate it)."""
        obj = self._source.get(namespace, name)
        return obj if obj is not None and self._admits(obj) else None

    def list(self, namespace: str | None = None) -> list[JsonObject]:
        return [obj for obj in self._source.list(namespace) if self._admits(obj)]

    def on_change(self, handler: Callable[[Key], None]) -> None:
        """Call ``handler(key)`` after every change of a key that is, or was, in the selection."""
        self._handlers.append(handler)

    def start(self) -> None:
        """Start the source (a no-op if it runs already)."""
        self._source.start()

    async def wait_synced(self) -> None:
        await self._source.wait_synced()

    async def stop(self) -> None:
        """Nothing to stop: the source belongs to its factory, which stops it."""

    def _changed(self, key: Key) -> None:
        obj = self._source.get(*key)
        if obj is not None and self._admits(obj):
            self._admitted.add(key)
        elif key in self._admitted:
            self._admitted.discard(key)
        else:
            return
        for handler in self._handlers:
            handler(key)
