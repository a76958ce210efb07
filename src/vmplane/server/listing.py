"""Filtering a collection by the request's label and field selectors."""

from __future__ import annotations

from aiohttp import web

from vmplane.server import status as st
from vmplane.server.context import ApiContext
from vmplane.server.routing import Target
from vmplane.server.selectors import (
    FieldRequirement,
    LabelRequirement,
    SelectorError,
    matches_fields,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)
from vmplane.store.base import JsonObject

__all__ = ["Selectors", "filtered_list", "request_selectors"]

Selectors = tuple[tuple[LabelRequirement, ...], tuple[FieldRequirement, ...]]


def request_selectors(target: Target, request: web.Request) -> Selectors:
    """The request's ``labelSelector`` and ``fieldSelector``; a bad selector is 400."""
    try:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(
            request.query.get("fieldSelector"), target.resource_type.field_selectors
        )
    except SelectorError as err:
        raise st.bad_request(str(err)) from err
    return labels, fields


def selected(selectors: Selectors, obj: JsonObject) -> bool:
    labels, fields = selectors
    return matches_labels(labels, obj) and matches_fields(fields, obj)


async def filtered_list(
    ctx: ApiContext, target: Target, request: web.Request
) -> tuple[list[JsonObject], int]:
    """The objects of a collection matching the request's selectors, and the snapshot's version."""
    selectors = request_selectors(target, request)
    result = await ctx.store.list(target.resource_type.store_resource, target.namespace)
    items = result.items
    if selectors[0] or selectors[1]:
        items = [o for o in items if selected(selectors, o)]
    return items, result.resource_version
