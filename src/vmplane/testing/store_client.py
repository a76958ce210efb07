"""``StoreObjectClient``: an ObjectClient straight over a Store, for tests that must bypass the API.

Some tests put objects in front of the node agent that admission would refuse (to show the agent
holds its own line), or drive one component without an API server. This fake applies selectors as
the API does but admits and authorizes nothing; production code never uses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal

from vmplane.api.selectors import parse_field_selector, parse_label_selector
from vmplane.apiserver.listing import Selectors, selected
from vmplane.apiserver.patch import json_patch, merge_patch
from vmplane.apiserver.watch import translate
from vmplane.client.base import Patch, PatchType
from vmplane.store.base import JsonObject, ListResult, Store, WatchEvent

__all__ = ["StoreObjectClient"]

_ANY_FIELD = ("status.nodeName", "status.phase", "spec.nodeName", "status.migrationState.targetNode")


def _selectors(label_selector: str, field_selector: str) -> Selectors:
    return parse_label_selector(label_selector), parse_field_selector(field_selector, _ANY_FIELD)


class StoreObjectClient:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        return await self.store.get(resource, namespace, name)

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        listed = await self.store.list(resource, namespace)
        chosen = _selectors(label_selector, field_selector)
        return ListResult([o for o in listed.items if selected(chosen, o)], listed.resource_version)

    async def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        since: int,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        chosen = _selectors(label_selector, field_selector)
        listed = await self.store.list(resource, namespace)
        matching = {
            (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in listed.items
            if selected(chosen, o)
        }
        async for event in self.store.watch(resource, namespace, since=since):
            kind = translate(event, chosen, matching)
            if kind is not None:
                yield WatchEvent(kind, event.object, event.resource_version)  # type: ignore[arg-type]

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        return await self.store.create(resource, obj)

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status", "finalize"] = ""
    ) -> JsonObject:
        return await self.store.update(resource, obj, subresource="status" if subresource == "status" else "")

    async def update_status(self, resource: str, obj: JsonObject) -> JsonObject:
        return await self.store.update(resource, obj, subresource="status")

    async def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Patch,
        *,
        patch_type: PatchType = "merge",
        subresource: Literal["", "status"] = "",
    ) -> JsonObject:
        current = await self.store.get(resource, namespace, name)
        if patch_type == "merge":
            patched = merge_patch(current, patch)
        else:
            patched = json_patch(current, json.dumps(patch).encode())
        return await self.store.update(resource, patched, subresource=subresource)

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        return await self.store.delete(resource, namespace, name, resource_version=resource_version)

    async def close(self) -> None:
        """Nothing: the store is the test's to close."""
