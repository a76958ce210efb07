"""The garbage collector's shell: watches the kinds it handles, keeps the owner -> dependents graph,
and carries out what ``garbage_collection.decide`` says.

Each change to an object enqueues it; the deletion (or deletion mark) of an object enqueues its
dependents, and a change to a dependent enqueues its owners that are being deleted, so a waiting
owner notices when its last blocking dependent goes. Decisions are first taken on the informers'
caches; whenever one would write, it is taken again on objects read from the store (as Kubernetes'
collector confirms a dangling owner with a live lookup), so a cache that has not yet seen a new owner
never costs its dependents.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

from vmplane.api.deletion import finalizers_for_deletion
from vmplane.client.base import ObjectClient
from vmplane.controller.garbage_collection import (
    Action,
    DeleteItem,
    Dependent,
    DropOwnerReferences,
    ItemKey,
    OrphanDependents,
    OwnerRef,
    OwnerState,
    RemoveFinalizer,
    decide,
    owner_refs,
    owner_state,
)
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["GarbageCollector"]

log = logging.getLogger(__name__)


class GarbageCollector:
    """Reconciles one object (an ``ItemKey``) against its owners and its dependents."""

    def __init__(self, *, client: ObjectClient, informers: Mapping[str, Informer], workers: int = 1) -> None:
        self._client = client
        self._informers = dict(informers)
        self._uid_of: dict[ItemKey, str] = {}
        self._key_of: dict[str, ItemKey] = {}
        self._owners_of: dict[ItemKey, set[str]] = {}
        self._dependents: dict[str, set[ItemKey]] = {}
        self._deleting: set[str] = set()
        self.controller: Controller[ItemKey] = Controller(
            name="garbage-collector", reconciler=self, workers=workers
        )
        for resource, informer in self._informers.items():
            informer.on_change(self._observer(resource, informer))

    def _observer(self, resource: str, informer: Informer) -> Callable[[Key], None]:
        def observe(key: Key) -> None:
            self._observe(ItemKey(resource, *key), informer.get(*key))

        return observe

    def _observe(self, item: ItemKey, obj: JsonObject | None) -> None:
        """Keep the graph current and enqueue whoever this change may concern."""
        queue = self.controller.queue
        old_uid = self._uid_of.get(item)
        old_owners = self._owners_of.get(item, set())
        if obj is None:
            self._uid_of.pop(item, None)
            self._owners_of.pop(item, None)
            new_owners: set[str] = set()
            concerned = set(self._dependents.get(old_uid, ())) if old_uid else set()
            if old_uid:
                self._key_of.pop(old_uid, None)
                self._deleting.discard(old_uid)
        else:
            metadata = obj.get("metadata") or {}
            uid = str(metadata.get("uid", ""))
            new_owners = {ref.uid for ref in owner_refs(item.resource, obj)}
            self._uid_of[item] = uid
            self._key_of[uid] = item
            self._owners_of[item] = new_owners
            concerned = {item}
            if metadata.get("deletionTimestamp"):
                self._deleting.add(uid)
                concerned |= self._dependents.get(uid, set())
        for owner in old_owners - new_owners:
            self._dependents.get(owner, set()).discard(item)
        for owner in new_owners:
            self._dependents.setdefault(owner, set()).add(item)
        for owner in old_owners | new_owners:
            owner_key = self._key_of.get(owner)
            if owner in self._deleting and owner_key is not None:
                concerned.add(owner_key)
        for key in concerned:
            queue.add(key)

    async def _read(self, key: ItemKey, *, live: bool) -> JsonObject | None:
        informer = self._informers.get(key.resource)
        if not live and informer is not None:
            return informer.get(key.namespace, key.name)
        try:
            return await self._client.get(key.resource, key.namespace, key.name)
        except NotFoundError:
            return None

    async def _decide(self, item: ItemKey, *, live: bool) -> tuple[JsonObject | None, tuple[Action, ...]]:
        obj = await self._read(item, live=live)
        if obj is None:
            return None, ()
        refs = owner_refs(item.resource, obj)
        owners: dict[str, OwnerState] = {}
        for ref in refs:
            owners[ref.uid] = await self._resolve(ref, live=live)
        uid = str(obj["metadata"].get("uid", ""))
        dependents = []
        for key in sorted(self._dependents.get(uid, ())):
            dependent = await self._read(key, live=live)
            if dependent is None:
                continue
            mine = [r for r in owner_refs(key.resource, dependent) if r.uid == uid]
            if mine:
                dependents.append(
                    Dependent(
                        key=key,
                        blocks=any(r.block and not r.involved for r in mine),
                        deleting=bool(dependent["metadata"].get("deletionTimestamp")),
                    )
                )
        return obj, decide(obj, refs=refs, owners=owners, dependents=dependents)

    async def _resolve(self, ref: OwnerRef, *, live: bool) -> OwnerState:
        if ref.key is None:
            return OwnerState.UNKNOWN
        return owner_state(ref, await self._read(ref.key, live=live))

    async def reconcile(self, key: ItemKey) -> Result:
        """Decide on the caches; confirm against the store before any write."""
        _, actions = await self._decide(key, live=False)
        if not actions:
            return Result()
        obj, actions = await self._decide(key, live=True)
        if obj is not None:
            for action in actions:
                await self._act(key, obj, action)
        return Result()

    async def _act(self, key: ItemKey, obj: JsonObject, action: Action) -> None:
        metadata = obj["metadata"]
        if isinstance(action, DeleteItem):
            log.debug("garbage collector: deleting %s %s/%s (%s)", *key, action.policy.value)
            finalizers = finalizers_for_deletion(list(metadata.get("finalizers") or []), action.policy)
            if finalizers is not None:
                obj = await self._client.update(
                    key.resource, {**obj, "metadata": {**metadata, "finalizers": finalizers}}
                )
            with contextlib.suppress(NotFoundError):
                await self._client.delete(
                    key.resource,
                    key.namespace,
                    key.name,
                    resource_version=int(obj["metadata"]["resourceVersion"]),
                )
        elif isinstance(action, DropOwnerReferences):
            await self._client.update(key.resource, _without_owners(obj, set(action.uids)))
        elif isinstance(action, OrphanDependents):
            for dependent_key in action.dependents:
                dependent = await self._read(dependent_key, live=True)
                if dependent is not None:
                    with contextlib.suppress(NotFoundError):
                        await self._client.update(
                            dependent_key.resource, _without_owners(dependent, {action.owner_uid})
                        )
        elif isinstance(action, RemoveFinalizer):
            current = await self._read(key, live=True)
            if current is None:
                return
            finalizers = [f for f in current["metadata"].get("finalizers") or () if f != action.finalizer]
            with contextlib.suppress(NotFoundError):
                await self._client.update(
                    key.resource, {**current, "metadata": {**current["metadata"], "finalizers": finalizers}}
                )


def _without_owners(obj: JsonObject, uids: set[str]) -> JsonObject:
    metadata = dict(obj["metadata"])
    kept = [r for r in metadata.get("ownerReferences") or () if r.get("uid") not in uids]
    if kept:
        metadata["ownerReferences"] = kept
    else:
        metadata.pop("ownerReferences", None)
    return {**obj, "metadata": metadata}
