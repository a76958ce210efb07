"""A collection as a request sees it: the watch cache's snapshot filtered by the request's selectors,
and the list response spliced from the items' pre-encoded JSON."""

from __future__ import annotations

from aiohttp import web

from vmplane.api.selectors import (
    FieldRequirement,
    LabelRequirement,
    SelectorError,
    matches_fields,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)
from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.routing import Target
from vmplane.apiserver.watch_cache import CachedObject, encode
from vmplane.store.base import JsonObject

__all__ = [
    "Selectors",
    "filtered_list",
    "filtered_snapshot",
    "list_body",
    "parse_selectors",
    "request_selectors",
    "selected",
]

Selectors = tuple[tuple[LabelRequirement, ...], tuple[FieldRequirement, ...]]


def request_selectors(target: Target, request: web.Request) -> Selectors:
    """The request's ``labelSelector`` and ``fieldSelector``; a bad selector is 400."""
    return parse_selectors(target, request.query.get("labelSelector"), request.query.get("fieldSelector"))


def parse_selectors(target: Target, labels: str | None, fields: str | None) -> Selectors:
    try:
        return parse_label_selector(labels), parse_field_selector(
            fields, target.resource_type.field_selectors
        )
    except SelectorError as err:
        raise st.bad_request(str(err)) from err


def selected(selectors: Selectors, obj: JsonObject) -> bool:
    labels, fields = selectors
    return matches_labels(labels, obj) and matches_fields(fields, obj)


async def filtered_snapshot(
    ctx: ApiContext, target: Target, request: web.Request
) -> tuple[list[CachedObject], int]:
    """The cached objects of a collection matching the request's selectors, and the snapshot's version."""
    selectors = request_selectors(target, request)
    snapshot = await ctx.caches.snapshot(target.resource_type.store_resource, target.namespace)
    items = snapshot.items
    if selectors[0] or selectors[1]:
        items = [item for item in items if selected(selectors, item.object)]
    return items, snapshot.resource_version


async def filtered_list(
    ctx: ApiContext, target: Target, request: web.Request
) -> tuple[list[JsonObject], int]:
    """The objects of a collection matching the request's selectors (shared: do not mutate them)."""
    items, resource_version = await filtered_snapshot(ctx, target, request)
    return [item.object for item in items], resource_version


def list_body(*, api_version: str, kind: str, metadata: JsonObject, items: list[CachedObject]) -> bytes:
    """``{"apiVersion", "kind", "metadata", "items"}`` with each item's JSON copied in, not re-encoded."""
    head = encode({"apiVersion": api_version, "kind": kind, "metadata": metadata})
    return b"".join((head[:-1], b',"items":[', b",".join(item.raw for item in items), b"]}"))
