"""A collection as it was at an earlier revision, rebuilt from the store's watch history.

A ``continue`` token or a ``resourceVersionMatch=Exact`` list names a revision R that the store may
have moved past. etcd reads at R directly; vmplane's Store offers its retained change log through
``watch(since=...)`` instead, which is enough: an object no change touched after R is as it is now,
an object first *added* after R did not exist at R, and any other object touched after R was, at R,
what its last change at or before R made it. Those last changes are looked for in widening windows
of history before R. When the history needed has been compacted, :class:`ExpiredError` goes to the
caller, who answers 410 Expired as kube-apiserver does for a compacted revision.

Nothing is kept between requests, so a token stays valid across restarts and on every API server
sharing the store, for as long as the store retains the history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from vmplane.apiserver.watch_cache import CachedObject, WatchCaches
from vmplane.store.base import ExpiredError, JsonObject, Store, WatchEvent

__all__ = ["Key", "key_of", "list_at", "state_at"]

Key = tuple[str, str]
_FIRST_WINDOW = 64
_WIDENING = 4


def key_of(obj: JsonObject) -> Key:
    metadata = obj["metadata"]
    return metadata.get("namespace") or "", metadata["name"]


def state_at(
    *, current: Iterable[CachedObject], touched: Iterable[Key], earlier: dict[Key, JsonObject | None]
) -> list[CachedObject]:
    """The objects at R, sorted by namespace and name: ``current`` except those ``touched`` after R,
    plus each touched object's state at R (``earlier``; None where it did not exist)."""
    changed = set(touched)
    items = [item for item in current if item.key not in changed]
    items += [CachedObject.of(obj) for obj in earlier.values() if obj is not None]
    return sorted(items, key=lambda item: item.key)


async def _close(events: AsyncIterator[WatchEvent]) -> None:
    aclose: Any = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _changes(
    store: Store, resource: str, namespace: str | None, *, since: int, upto: int
) -> list[WatchEvent]:
    """The changes in (since, upto], in order; ExpiredError when ``since`` has been compacted."""
    if since >= upto:
        return []
    changes: list[WatchEvent] = []
    events = store.watch(resource, namespace, since=since, progress=True)
    try:
        async for event in events:
            if event.type == "BOOKMARK":
                if event.resource_version >= upto:
                    break
                continue
            if event.resource_version > upto:
                break
            changes.append(event)
            if event.resource_version == upto:
                break
    finally:
        await _close(events)
    return changes


async def _retained(store: Store, resource: str, since: int) -> bool:
    events = store.watch(resource, since=since, progress=True)
    try:
        await anext(events)
    except ExpiredError:
        return False
    finally:
        await _close(events)
    return True


async def _oldest_retained(store: Store, resource: str, *, expired: int, retained: int) -> int:
    """The smallest ``since`` in (expired, retained] the store can still watch from."""
    while retained - expired > 1:
        middle = (expired + retained) // 2
        if await _retained(store, resource, middle):
            retained = middle
        else:
            expired = middle
    return retained


async def _states_at(
    store: Store, resource: str, namespace: str | None, revision: int, wanted: set[Key]
) -> dict[Key, JsonObject | None]:
    """Each wanted object as its last change at or before ``revision`` left it (None: deleted)."""
    found: dict[Key, JsonObject | None] = {}
    window = _FIRST_WINDOW
    while wanted - found.keys():
        since = max(revision - window, 0)
        last_window = since == 0
        try:
            changes = await _changes(store, resource, namespace, since=since, upto=revision)
        except ExpiredError:
            since = await _oldest_retained(store, resource, expired=since, retained=revision)
            changes = await _changes(store, resource, namespace, since=since, upto=revision)
            last_window = True
        for event in changes:
            key = key_of(event.object)
            if key in wanted:
                found[key] = None if event.type == "DELETED" else event.object
        if last_window:
            break
        window *= _WIDENING
    if wanted - found.keys():
        raise ExpiredError(f"the state of {resource} at revision {revision} has been compacted")
    return found


async def list_at(
    store: Store, caches: WatchCaches, resource: str, namespace: str | None, revision: int
) -> tuple[list[CachedObject], int]:
    """The objects of ``resource`` at ``revision`` and the current revision they were rebuilt from.

    ``revision`` must not be newer than the store's; raises ExpiredError when what is needed has been
    compacted.
    """
    snapshot = await caches.snapshot(resource, namespace)
    if revision >= snapshot.resource_version:
        return snapshot.items, snapshot.resource_version
    after = await _changes(store, resource, namespace, since=revision, upto=snapshot.resource_version)
    first: dict[Key, str] = {}
    for event in after:
        first.setdefault(key_of(event.object), event.type)
    existed = {key for key, kind in first.items() if kind != "ADDED"}
    earlier = await _states_at(store, resource, namespace, revision, existed) if existed else {}
    return state_at(current=snapshot.items, touched=first, earlier=earlier), snapshot.resource_version
