"""The write verbs: create, update (PUT) and patch (deletes are :mod:`vmplane.apiserver.deletes`).

Each write is decode -> check against the URL -> admit -> store (or, with ``dryRun=All``, return
what the store would have made of it). Nothing malformed reaches admission; nothing rejected by
admission reaches the store.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from typing import Any, Literal

from aiohttp import web

from vmplane.api.errors import CauseType, FieldCause, InvalidObjectError
from vmplane.api.metadata_validation import metadata_causes
from vmplane.api.timestamps import timestamp
from vmplane.apiserver import decoders, field_ownership, protobuf
from vmplane.apiserver import patch as patches
from vmplane.apiserver import status as st
from vmplane.apiserver.access import request_user
from vmplane.apiserver.authz import CONTROLLERS
from vmplane.apiserver.bodies import (
    SERVER_OWNED,
    WriteOptions,
    check_object,
    decode_body,
    duplicate_warnings,
    parse_write_options,
)
from vmplane.apiserver.context import ApiContext, json_response
from vmplane.apiserver.registry import Admitted, Operation
from vmplane.apiserver.routing import Target
from vmplane.store.base import ConflictError, JsonObject, NotFoundError, StoreError

__all__ = ["create", "create_object", "current_object", "patch", "read_body", "update", "write_options"]

_CUSTOM_PATCH_TYPES = [patches.JSON_PATCH, patches.MERGE_PATCH, patches.APPLY]
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_PREFIX = 58


async def read_body(ctx: ApiContext, request: web.Request) -> bytes:
    limit = ctx.settings.body_limit
    if request.content_length is not None and request.content_length > limit:
        raise st.too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise st.too_large(limit) from err


def write_options(request: web.Request, extra_dry_run: list[str] | None = None) -> WriteOptions:
    return parse_write_options(request.query, request.query.getall("dryRun", []) + (extra_dry_run or []))


def _decode(
    target: Target, request: web.Request, body: bytes, opts: WriteOptions
) -> tuple[JsonObject, list[str]]:
    resource_type = target.resource_type
    protobuf_kind = protobuf.serves(resource_type.api_version, resource_type.kind)
    return decode_body(body, request.content_type, opts.field_validation, protobuf_kind=protobuf_kind)


def _admit(
    target: Target, operation: Operation, new: JsonObject, old: JsonObject | None, opts: WriteOptions
) -> Admitted:
    name = str(new.get("metadata", {}).get("name", ""))
    resource_type = target.resource_type
    # Every kind, typed or not, is held to ObjectMeta's rules before its own admitter runs.
    causes = metadata_causes(
        new.get("metadata") or {}, namespaced=resource_type.namespaced, name_rule=resource_type.name_rule
    )
    if causes:
        raise st.invalid(resource_type, name, causes)
    try:
        return target.resource_type.admitter.admit(
            operation=operation,
            new=new,
            old=old,
            field_validation=opts.field_validation,
            dry_run=opts.dry_run,
        )
    except InvalidObjectError as err:
        raise st.invalid(target.resource_type, name, err.causes) from err


def _now_rfc3339(ctx: ApiContext) -> str:
    return timestamp(ctx.clock())


def _manager(request: web.Request, opts: WriteOptions, options_kind: str) -> str:
    return field_ownership.manager_name(
        field_manager=opts.field_manager,
        user_agent=request.headers.get("User-Agent", ""),
        options_kind=options_kind,
    )


def _spec_part(obj: JsonObject) -> JsonObject:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


async def _check_namespace(ctx: ApiContext, target: Target) -> None:
    namespaces = ctx.registry.lookup("", "v1", "namespaces")
    if not target.resource_type.namespaced or namespaces is None or not target.namespace:
        return
    try:
        namespace = await ctx.store.get(namespaces.store_resource, "", target.namespace)
    except NotFoundError as err:
        raise st.namespace_not_found(target.namespace) from err
    if namespace.get("metadata", {}).get("deletionTimestamp"):
        raise st.namespace_terminating(target.resource_type, target.name or "", target.namespace)


async def create(ctx: ApiContext, target: Target, request: web.Request) -> web.Response:
    opts = write_options(request)
    obj, decode_warnings = _decode(target, request, await read_body(ctx, request), opts)
    manager = _manager(request, opts, "CreateOptions")
    # Only the control plane's own controllers create an object with its first status; anyone
    # else's is dropped, so a manifest exported with its status does not arrive bound and Running.
    keep_status = target.resource_type.status_on_create and CONTROLLERS in request_user(request).groups
    stored, warnings = await create_object(ctx, target, obj, opts, manager=manager, keep_status=keep_status)
    return json_response(stored, status=201, warnings=decode_warnings + warnings)


async def create_object(
    ctx: ApiContext,
    target: Target,
    obj: JsonObject,
    opts: WriteOptions,
    *,
    manager: str,
    keep_status: bool = False,
) -> tuple[JsonObject, list[str]]:
    """Create ``obj`` as a POST would (generateName, checks, admission), for subresources that create
    objects of another kind (a VM's ``migrate`` creates a migration). Returns it and the warnings.

    ``keep_status``: the status ``obj`` carries is stored with it, owned by ``manager`` as a write of
    the status subresource would own it (otherwise a kind with that subresource drops it).
    """
    metadata = obj.get("metadata") or {}
    generate_name = metadata.get("generateName")
    if not metadata.get("name") and generate_name:
        if not isinstance(generate_name, str):
            raise st.invalid(
                target.resource_type,
                "",
                [FieldCause("metadata.generateName", "Invalid value: must be a string")],
            )
        causes = metadata_causes({"generateName": generate_name}, name_rule=target.resource_type.name_rule)
        if causes:
            raise st.invalid(target.resource_type, "", causes)
        suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
        # apiserver's SimpleNameGenerator keeps at most 58 characters of the prefix.
        obj = {**obj, "metadata": {**metadata, "name": f"{generate_name[:_MAX_PREFIX]}{suffix}"}}
    obj = check_object(obj, target)
    now = _now_rfc3339(ctx)
    obj = field_ownership.recorded(target=target, live=None, new=obj, manager=manager, now=now)
    keep_status = keep_status and bool(obj.get("status"))
    if keep_status:
        without_status = {k: v for k, v in obj.items() if k != "status"}
        status_target = replace(target, subresource="status")
        obj = field_ownership.recorded(
            target=status_target, live=without_status, new=obj, manager=manager, now=now
        )
    return await _create_checked(ctx, target, obj, opts, keep_status=keep_status)


async def _create_checked(
    ctx: ApiContext, target: Target, obj: JsonObject, opts: WriteOptions, *, keep_status: bool
) -> tuple[JsonObject, list[str]]:
    resource_type = target.resource_type
    # managedFields were worked out by the caller from the write itself.
    metadata = {k: v for k, v in obj["metadata"].items() if k not in SERVER_OWNED or k == "managedFields"}
    obj = {**obj, "metadata": metadata}
    if resource_type.has_status_subresource and not keep_status:
        obj.pop("status", None)
    await _check_namespace(ctx, Target(resource_type, target.namespace, metadata["name"]))
    admitted = _admit(target, "CREATE", obj, None, opts)
    name = metadata["name"]
    if opts.dry_run:
        try:
            await ctx.store.get(resource_type.store_resource, target.store_namespace, name)
        except NotFoundError:
            result = dict(admitted.object)
            result["metadata"] = {
                **result.get("metadata", {}),
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": _now_rfc3339(ctx),
            }
            return result, admitted.warnings
        raise st.already_exists(resource_type, name)
    try:
        stored = await ctx.store.create(resource_type.store_resource, admitted.object)
    except StoreError as err:
        raise st.from_exception(err, resource_type, name) from err
    return stored, admitted.warnings


async def current_object(ctx: ApiContext, target: Target) -> JsonObject:
    assert target.name is not None
    try:
        return await ctx.store.get(target.resource_type.store_resource, target.store_namespace, target.name)
    except NotFoundError as err:
        raise st.not_found(target.resource_type, target.name) from err


def _candidate(target: Target, new: JsonObject, old: JsonObject) -> JsonObject:
    """The object an update would write: server-owned fields and the other half (spec/status) from ``old``."""
    old_meta = old.get("metadata", {})
    new_rv = new.get("metadata", {}).get("resourceVersion") or old_meta.get("resourceVersion")
    if target.subresource == "status":
        candidate = {**old, "metadata": {**old_meta, "resourceVersion": new_rv}}
        if "status" in new:
            candidate["status"] = new["status"]
        else:
            candidate.pop("status", None)
        return candidate
    metadata = dict(new.get("metadata", {}))
    for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
        if key in old_meta:
            metadata[key] = old_meta[key]
    metadata["resourceVersion"] = new_rv
    candidate = {**new, "metadata": metadata}
    if target.resource_type.has_status_subresource:
        candidate.pop("status", None)
        if "status" in old:
            candidate["status"] = old["status"]
    return candidate


async def _commit_update(
    ctx: ApiContext, target: Target, new: JsonObject, old: JsonObject, opts: WriteOptions
) -> tuple[JsonObject, list[str]]:
    """Admit and store (or simulate) an update of ``old`` to ``new``; raises ConflictError through."""
    resource_type = target.resource_type
    candidate = _candidate(target, new, old)
    if candidate["metadata"].get("resourceVersion") != old.get("metadata", {}).get("resourceVersion"):
        raise ConflictError(resource_type.store_resource)
    admitted = _admit(target, "UPDATE", candidate, old, opts)
    if admitted.object == old:
        # A write that changes nothing: kube-apiserver returns the object as it is, with no new
        # resourceVersion and no watch event.
        return old, admitted.warnings
    if opts.dry_run:
        result = dict(admitted.object)
        if target.subresource != "status" and _spec_part(result) != _spec_part(old):
            result["metadata"] = {
                **result["metadata"],
                "generation": old["metadata"].get("generation", 0) + 1,
            }
        return result, admitted.warnings
    subresource: Literal["", "status"] = "status" if target.subresource == "status" else ""
    stored = await ctx.store.update(resource_type.store_resource, admitted.object, subresource=subresource)
    return stored, admitted.warnings


async def update(ctx: ApiContext, target: Target, request: web.Request) -> web.Response:
    resource_type = target.resource_type
    assert target.name is not None
    opts = write_options(request)
    decoded, decode_warnings = _decode(target, request, await read_body(ctx, request), opts)
    obj = check_object(decoded, target)
    if not obj["metadata"].get("resourceVersion") and not resource_type.allow_unconditional_update:
        cause = FieldCause(
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
            CauseType.FIELD_VALUE_INVALID,
        )
        raise st.invalid(resource_type, target.name, [cause])
    manager = _manager(request, opts, "UpdateOptions")
    old = await current_object(ctx, target)
    obj = field_ownership.recorded(target=target, live=old, new=obj, manager=manager, now=_now_rfc3339(ctx))
    try:
        stored, warnings = await _commit_update(ctx, target, obj, old, opts)
    except StoreError as err:
        raise st.from_exception(err, resource_type, target.name) from err
    return json_response(stored, warnings=decode_warnings + warnings)


def _patched(
    target: Target,
    content_type: str,
    current: JsonObject,
    body: bytes,
    duplicates: list[str] | None = None,
) -> JsonObject:
    if content_type == patches.MERGE_PATCH:
        result: Any = patches.merge_patch(current, patches.decode_merge_patch(body, duplicates))
    elif content_type == patches.JSON_PATCH:
        result = patches.json_patch(current, body)
    elif content_type == patches.STRATEGIC_MERGE_PATCH and not target.resource_type.group:
        result = patches.strategic_merge_patch(current, body, duplicates)
    else:
        accepted = _CUSTOM_PATCH_TYPES
        if not target.resource_type.group:
            accepted = [*accepted, patches.STRATEGIC_MERGE_PATCH]
        raise st.unsupported_media_type(accepted)
    if not isinstance(result, dict):
        raise st.bad_request("the patch must produce an object")
    # Patches applied one after another must not nest deeper; managedFields are the server's and one
    # level deeper than the object by construction, so they are not counted.
    decoders.check_depth(field_ownership.with_entries(result, []), "patch")
    return result


async def patch(ctx: ApiContext, target: Target, request: web.Request) -> web.Response:
    resource_type = target.resource_type
    assert target.name is not None
    opts = write_options(request)
    content_type = request.content_type
    if content_type == patches.APPLY:
        return await _server_side_apply(ctx, target, request, opts)
    if content_type not in (patches.MERGE_PATCH, patches.JSON_PATCH, patches.STRATEGIC_MERGE_PATCH):
        _patched(target, content_type, {}, b"")
    manager = _manager(request, opts, "PatchOptions")
    body = await read_body(ctx, request)
    for attempt in range(ctx.settings.max_conflict_retries):
        current = await current_object(ctx, target)
        duplicates: list[str] | None = None if opts.field_validation == "Ignore" else []
        new = check_object(_patched(target, content_type, current, body, duplicates), target)
        new = field_ownership.recorded(
            target=target, live=current, new=new, manager=manager, now=_now_rfc3339(ctx)
        )
        decode_warnings = duplicate_warnings(duplicates or [], opts.field_validation)
        current_rv = current.get("metadata", {}).get("resourceVersion")
        explicit = new["metadata"].get("resourceVersion") not in (None, "", current_rv)
        try:
            stored, warnings = await _commit_update(ctx, target, new, current, opts)
        except ConflictError as err:
            if explicit or attempt == ctx.settings.max_conflict_retries - 1:
                raise st.conflict(resource_type, target.name) from err
            continue
        except StoreError as err:
            raise st.from_exception(err, resource_type, target.name) from err
        return json_response(stored, warnings=decode_warnings + warnings)
    raise st.conflict(resource_type, target.name)


async def _server_side_apply(
    ctx: ApiContext, target: Target, request: web.Request, opts: WriteOptions
) -> web.Response:
    """Server-side apply with field ownership (:mod:`vmplane.apiserver.field_ownership`)."""
    resource_type = target.resource_type
    assert target.name is not None
    if not opts.field_manager:
        raise st.ApiError(
            code=422,
            reason="Invalid",
            message='PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
            "apply patch",
        )
    manager = _manager(request, opts, "PatchOptions")
    duplicates: list[str] | None = None if opts.field_validation == "Ignore" else []
    applied = check_object(patches.decode_apply(await read_body(ctx, request), duplicates), target)
    decode_warnings = duplicate_warnings(duplicates or [], opts.field_validation)
    for attempt in range(ctx.settings.max_conflict_retries):
        try:
            current = await ctx.store.get(resource_type.store_resource, target.store_namespace, target.name)
        except NotFoundError:
            if target.subresource:
                raise st.not_found(resource_type, target.name) from None
            created = field_ownership.applied(
                target=target, live=None, config=applied, manager=manager, now=_now_rfc3339(ctx), force=True
            )
            stored, warnings = await _create_checked(ctx, target, created, opts, keep_status=False)
            return json_response(stored, status=201, warnings=decode_warnings + warnings)
        new = field_ownership.applied(
            target=target,
            live=current,
            config=applied,
            manager=manager,
            now=_now_rfc3339(ctx),
            force=opts.force,
        )
        decoders.check_depth(field_ownership.with_entries(new, []), "YAML")
        new["metadata"] = {**new["metadata"], "resourceVersion": current["metadata"].get("resourceVersion")}
        try:
            stored, warnings = await _commit_update(ctx, target, new, current, opts)
        except ConflictError as err:
            if attempt == ctx.settings.max_conflict_retries - 1:
                raise st.conflict(resource_type, target.name) from err
            continue
        except StoreError as err:
            raise st.from_exception(err, resource_type, target.name) from err
        return json_response(stored, warnings=decode_warnings + warnings)
    raise st.conflict(resource_type, target.name)
