"""The delete verbs: delete and deletecollection, with DeleteOptions and propagation policies.

A delete is decode options -> preconditions -> deletion guards -> (dry run, or) the finalizer the
propagation policy stands for, then the store's delete; the garbage collector does the rest.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vmplane.api.deletion import PropagationPolicy, finalizers_for_deletion
from vmplane.apiserver import decoders, protobuf
from vmplane.apiserver import status as st
from vmplane.apiserver.context import ApiContext, json_response
from vmplane.apiserver.deletion_guards import check_deletion
from vmplane.apiserver.listing import filtered_list
from vmplane.apiserver.registry import ResourceType
from vmplane.apiserver.routing import Target
from vmplane.apiserver.writes import current_object, read_body, write_options
from vmplane.store.base import ConflictError, JsonObject, NotFoundError, StoreError

__all__ = ["delete", "delete_collection"]


def _delete_options(body: bytes, content_type: str = "") -> JsonObject:
    if not body.strip():
        return {}
    try:
        if protobuf.is_protobuf(content_type):
            options: Any = protobuf.decode_object(body)
            if options.get("kind") != "DeleteOptions":
                raise st.bad_request(
                    f'the body of the request must be a DeleteOptions, got "{options["kind"]}"'
                )
        else:
            options = decoders.load_json(body, what="DeleteOptions")
    except (decoders.BodyError, protobuf.ProtobufError) as err:
        raise st.bad_request(f"error decoding DeleteOptions: {err}") from err
    if not isinstance(options, dict):
        raise st.bad_request("DeleteOptions must be an object")
    policy = options.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise st.bad_request(f'propagationPolicy: Unsupported value: "{policy}"')
    preconditions = options.get("preconditions")
    if preconditions is not None and not isinstance(preconditions, dict):
        raise st.bad_request("preconditions: Invalid value: must be an object")
    for key in ("uid", "resourceVersion"):
        value = (preconditions or {}).get(key)
        if value is not None and not isinstance(value, str):
            raise st.bad_request(f"preconditions.{key}: Invalid value: {json.dumps(value)}: must be a string")
    rv = (preconditions or {}).get("resourceVersion")
    if rv and not (rv.isascii() and rv.isdigit()):
        raise st.bad_request(
            f'preconditions.resourceVersion: Invalid value: "{rv}": must be a resource version '
            "(a non-negative integer)"
        )
    dry_run = options.get("dryRun")
    if dry_run is not None and not (isinstance(dry_run, list) and all(isinstance(v, str) for v in dry_run)):
        raise st.bad_request("dryRun: Invalid value: must be a list of strings")
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise st.bad_request(f"orphanDependents: Invalid value: {json.dumps(orphan)}: must be a boolean")
    if orphan is not None and policy is not None:
        raise st.ApiError(
            code=422,
            reason="Invalid",
            message=f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "{policy}": '
            "orphanDependents and deletionPropagation cannot be both set",
        )
    return options


def _propagation(options: JsonObject) -> PropagationPolicy | None:
    """The policy a delete asks for; the deprecated ``orphanDependents`` maps onto it."""
    if options.get("propagationPolicy") is not None:
        return PropagationPolicy(options["propagationPolicy"])
    orphan = options.get("orphanDependents")
    if orphan is None:
        return None
    return PropagationPolicy.ORPHAN if orphan else PropagationPolicy.BACKGROUND


async def _delete_stored(
    ctx: ApiContext,
    resource_type: ResourceType,
    current: JsonObject,
    policy: PropagationPolicy | None,
    rv: int | None,
) -> JsonObject:
    """Delete ``current``, first giving it the finalizer its propagation policy stands for.

    The finalizer is written by an update before the delete marks the object (two writes, each
    checked against the resourceVersion); the garbage collector acts only on marked objects.
    """
    metadata = current["metadata"]
    resource = resource_type.store_resource
    namespace, name = metadata.get("namespace", "") or "", metadata["name"]
    for attempt in range(ctx.settings.max_conflict_retries):
        finalizers = finalizers_for_deletion(list(metadata.get("finalizers") or []), policy)
        if finalizers is not None and not metadata.get("deletionTimestamp"):
            try:
                current = await ctx.store.update(
                    resource, {**current, "metadata": {**metadata, "finalizers": finalizers}}
                )
            except ConflictError:
                if rv is not None or attempt == ctx.settings.max_conflict_retries - 1:
                    raise
                current = await ctx.store.get(resource, namespace, name)
                metadata = current["metadata"]
                continue
            rv = int(current["metadata"]["resourceVersion"])
        return await ctx.store.delete(resource, namespace, name, resource_version=rv)
    raise ConflictError(resource)


async def delete(ctx: ApiContext, target: Target, request: web.Request) -> web.Response:
    resource_type = target.resource_type
    assert target.name is not None
    options = _delete_options(await read_body(ctx, request), request.content_type)
    opts = write_options(request, list(options.get("dryRun") or []))
    preconditions = options.get("preconditions") or {}
    current = await current_object(ctx, target)
    current_uid = current.get("metadata", {}).get("uid")
    if preconditions.get("uid") and preconditions["uid"] != current_uid:
        raise st.ApiError(
            code=409,
            reason="Conflict",
            message=f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: "
            f"{current_uid}",
        )
    await check_deletion(ctx.store, resource_type, current)
    rv = preconditions.get("resourceVersion")
    current_rv = current.get("metadata", {}).get("resourceVersion")
    if rv and rv != current_rv:
        raise st.ApiError(
            code=409,
            reason="Conflict",
            message=f"Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in "
            f"object meta: {current_rv}",
        )
    if opts.dry_run:
        return json_response(current)
    try:
        deleted = await _delete_stored(
            ctx, resource_type, current, _propagation(options), int(rv) if rv else None
        )
    except (StoreError, ValueError) as err:
        raise st.from_exception(err, resource_type, target.name) from err
    return json_response(deleted)


async def delete_collection(ctx: ApiContext, target: Target, request: web.Request) -> web.Response:
    resource_type = target.resource_type
    options = _delete_options(await read_body(ctx, request), request.content_type)
    opts = write_options(request, list(options.get("dryRun") or []))
    items, resource_version = await filtered_list(ctx, target, request)
    for obj in items:
        await check_deletion(ctx.store, resource_type, obj)
    deleted: list[JsonObject] = []
    for obj in items:
        metadata = obj.get("metadata", {})
        if opts.dry_run:
            deleted.append(obj)
            continue
        try:
            deleted.append(await _delete_stored(ctx, resource_type, obj, _propagation(options), None))
        except NotFoundError:
            continue
        except StoreError as err:
            raise st.from_exception(err, resource_type, metadata["name"]) from err
    body = {
        "apiVersion": resource_type.api_version,
        "kind": resource_type.list_kind,
        "metadata": {"resourceVersion": str(resource_version)},
        "items": deleted,
    }
    return json_response(body)
