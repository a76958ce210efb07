"""The access check at the HTTP edge: authenticate, describe, look up a node binding, authorize.

The decisions are :func:`vmplane.apiserver.authz.authorize`'s; this module only gathers what it needs
(the stored VMI's ``status.nodeName`` and, for a create, the new object's name when the caller is a
node) and turns a denial into Kubernetes' ``401``/``403`` ``Status``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.apiserver import protobuf
from vmplane.apiserver import status as st
from vmplane.apiserver.authz import (
    NODES_GROUP,
    READ_VERBS,
    Attributes,
    Decision,
    User,
    authorize,
    forbidden_message,
)
from vmplane.apiserver.request_info import node_name_written, request_attributes
from vmplane.store.base import NotFoundError, Store

__all__ = ["USER_KEY", "check_access", "forbidden", "node_relations", "request_user"]

#: Where the middleware leaves the authenticated ``User`` for handlers (the self reviews).
USER_KEY = "vmplane_user"
_NODE_CREATED = ("nodes", "leases")


def forbidden(user: User, attrs: Attributes, reason: str = "", *, admission: bool = False) -> st.ApiError:
    decision = Decision(False, reason, admission=admission)
    details: dict[str, str] = (
        {"name": attrs.name, "kind": attrs.resource} if attrs.is_resource_request else {}
    )
    if attrs.api_group:
        details["group"] = attrs.api_group
    return st.ApiError(
        code=403, reason="Forbidden", message=forbidden_message(user, attrs, decision), details=details
    )


async def node_relations(store: Store, attrs: Attributes) -> Attributes:
    """``attrs`` with the VMI's nodes filled in: the one it is bound to, the one it migrates to."""
    try:
        vmi = await store.get(VIRTUAL_MACHINE_INSTANCES, attrs.namespace, attrs.name)
    except NotFoundError:
        return attrs
    status = vmi.get("status") or {}
    node = status.get("nodeName")
    migration = status.get("migrationState") or {}
    target = migration.get("targetNode") if isinstance(migration, dict) else None
    ended = isinstance(migration, dict) and migration.get("failed")
    return replace(
        attrs,
        node_binding=node if isinstance(node, str) else None,
        migration_target=target if isinstance(target, str) and not ended else None,
    )


async def _created_name(request: web.Request) -> str:
    """The ``metadata.name`` of a JSON or protobuf create body (aiohttp keeps the body for the handler)."""
    raw = await request.read()
    try:
        body = protobuf.decode_object(raw) if protobuf.is_protobuf(request.content_type) else json.loads(raw)
    except (ValueError, protobuf.ProtobufError):
        return ""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


async def check_access(
    request: web.Request,
    *,
    authenticate: Callable[[str | None], User | None],
    store: Store,
    authorization: str | None = None,
) -> User:
    """The caller's identity, or the ``401``/``403`` that ends the request.

    ``authorization``: the credential to check when it is not the request's own header (the web
    console's session stands for one).
    """
    user = authenticate(authorization if authorization is not None else request.headers.get("Authorization"))
    if user is None:
        raise st.unauthorized()
    attrs = request_attributes(request.method, request.path, request.query)
    if NODES_GROUP in user.groups and attrs.verb not in READ_VERBS:
        if attrs.resource == "virtualmachineinstances" and attrs.name and attrs.api_group == "kubevirt.io":
            written = node_name_written(await request.read(), request.headers.get("Content-Type", ""))
            attrs = replace(await node_relations(store, attrs), node_written=written)
        elif attrs.verb == "create" and attrs.resource in _NODE_CREATED and not attrs.name:
            attrs = replace(attrs, name=await _created_name(request))
    decision = authorize(user, attrs)
    if not decision.allowed:
        raise forbidden(user, attrs, decision.reason, admission=decision.admission)
    request[USER_KEY] = user
    return user


def request_user(request: web.Request) -> User:
    user = request.get(USER_KEY)
    if not isinstance(user, User):
        raise st.unauthorized()
    return user
