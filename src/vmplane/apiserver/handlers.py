"""REST dispatch and the read verbs (get, list): method + target -> verb handler.

Writes live in :mod:`vmplane.apiserver.writes`, watch in :mod:`vmplane.apiserver.watch`.
"""

from __future__ import annotations

from aiohttp import web

from vmplane.apiserver import deletes, namespaces, paging, writes
from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext, json_response, query_bool, wants_table
from vmplane.apiserver.freshness import too_large, wait_for_revision
from vmplane.apiserver.list_history import list_at
from vmplane.apiserver.list_options import EXACT, list_options
from vmplane.apiserver.listing import filtered_snapshot, list_body, parse_selectors, selected
from vmplane.apiserver.routing import Target, parse_target
from vmplane.apiserver.tables import build_table
from vmplane.apiserver.watch import serve_watch
from vmplane.apiserver.watch_cache import CachedObject
from vmplane.store.base import ExpiredError, JsonObject, NotFoundError

__all__ = ["ResourceHandlers"]


def _int_param(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError as err:
        raise st.bad_request(f"{name}: Invalid value: {raw!r}: must be an integer") from err


def _list_scope(target: Target) -> str:
    """What a paged list's continue token is bound to: its resource and namespace, as etcd binds a
    continue key to the list's key prefix (the selectors are the snapshot's, taken at the first page)."""
    return f"{target.resource_type.store_resource}\x00{target.namespace or ''}"


async def _history(
    ctx: ApiContext, target: Target, revision: int, expired_message: str
) -> list[CachedObject]:
    """The collection at ``revision``; 410 Expired with ``expired_message`` once the history it needs
    has been compacted, 504 Too large for a revision the store has not reached."""
    try:
        items, current = await list_at(
            ctx.store, ctx.caches, target.resource_type.store_resource, target.namespace, revision
        )
    except ExpiredError as err:
        raise st.expired(expired_message) from err
    if revision > current:
        raise too_large(revision, current)
    return items


class ResourceHandlers:
    """aiohttp handlers for ``/api/v1/...`` and ``/apis/<group>/<version>/...``."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", "v1", request.match_info["tail"])

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self._dispatch(request, info["group"], info["version"], info["tail"])

    async def _dispatch(
        self, request: web.Request, group: str, version: str, tail: str
    ) -> web.StreamResponse:
        target = parse_target(self.ctx.registry, group, version, tail)
        method = request.method
        if target.resource_type.read_only and method != "GET":
            raise st.method_not_allowed()
        if target.name is None:
            if method == "GET":
                if query_bool(request.query.get("watch")):
                    return await serve_watch(self.ctx, target, request)
                return await self.list(target, request)
            if target.namespace is None and method in ("POST", "DELETE"):
                raise st.method_not_allowed()
            if method == "POST":
                return await writes.create(self.ctx, target, request)
            if method == "DELETE":
                return await deletes.delete_collection(self.ctx, target, request)
            raise st.method_not_allowed()
        if target.subresource == "finalize":
            # Only an update is served there, as kube-apiserver's namespace FinalizeREST.
            if method != "PUT":
                raise st.method_not_allowed()
            return await namespaces.finalize(
                self.ctx, target, request, await writes.read_body(self.ctx, request)
            )
        if method == "GET":
            return await self.get(target, request)
        if method == "PUT":
            return await writes.update(self.ctx, target, request)
        if method == "PATCH":
            return await writes.patch(self.ctx, target, request)
        if method == "DELETE" and not target.subresource:
            return await deletes.delete(self.ctx, target, request)
        raise st.method_not_allowed()

    async def get(self, target: Target, request: web.Request) -> web.Response:
        resource_type = target.resource_type
        assert target.name is not None
        try:
            obj = await self.ctx.store.get(resource_type.store_resource, target.store_namespace, target.name)
        except NotFoundError as err:
            raise st.not_found(resource_type, target.name) from err
        if wants_table(request.headers.get("Accept")):
            table = build_table(
                resource_type,
                [obj],
                now=self.ctx.clock(),
                include_object=request.query.get("includeObject", "Metadata"),
                list_metadata={"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")},
            )
            return json_response(table)
        return json_response(obj)

    async def list(self, target: Target, request: web.Request) -> web.Response:
        resource_type = target.resource_type
        limit = _int_param(request, "limit")
        token = request.query.get("continue", "")
        scope = _list_scope(target)
        options = list_options(request.query, watch=False)
        if token:
            resume = paging.decode_token(token, scope=scope)
            labels, fields = resume.label_selector, resume.field_selector
            selectors = parse_selectors(target, labels, fields)
            items = await _history(self.ctx, target, resume.resource_version, paging.EXPIRED)
            items = [
                item
                for item in items
                if item.key > resume.after and (not any(selectors) or selected(selectors, item.object))
            ]
            resource_version = resume.resource_version
        else:
            labels, fields = request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
            selectors = parse_selectors(target, labels, fields)
            wanted = options.resource_version
            if wanted and options.match != EXACT:
                await wait_for_revision(self.ctx.store, wanted)
            items, resource_version = await filtered_snapshot(self.ctx, target, request)
            if wanted and options.match == EXACT and wanted != resource_version:
                if wanted > resource_version:
                    raise too_large(wanted, resource_version)
                items = await _history(
                    self.ctx, target, wanted, "The resourceVersion for the provided list is too old."
                )
                if any(selectors):
                    items = [item for item in items if selected(selectors, item.object)]
                resource_version = wanted
        page = paging.page(
            items,
            key=lambda item: item.key,
            resource_version=resource_version,
            limit=limit,
            scope=scope,
            label_selector=labels,
            field_selector=fields,
        )
        metadata: JsonObject = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            metadata["continue"] = page.continue_token
        if page.remaining is not None:
            metadata["remainingItemCount"] = page.remaining
        if wants_table(request.headers.get("Accept")):
            table = build_table(
                resource_type,
                [item.object for item in page.items],
                now=self.ctx.clock(),
                include_object=request.query.get("includeObject", "Metadata"),
                list_metadata=metadata,
            )
            return json_response(table)
        body = list_body(
            api_version=resource_type.api_version,
            kind=resource_type.list_kind,
            metadata=metadata,
            items=page.items,
        )
        return web.Response(body=body, content_type="application/json")
