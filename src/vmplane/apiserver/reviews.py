"""``SelfSubjectAccessReview`` and ``SelfSubjectReview``: what ``kubectl auth can-i`` and ``whoami`` ask.

An access review is answered by the same ``authorize()`` the middleware applies (with the node
binding of a named VMI looked up the same way), so ``can-i`` never says yes to what would be refused.
kubectl sends both as protobuf; the answer is JSON, which its ``Accept`` also allows.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vmplane.api.timestamps import timestamp
from vmplane.apiserver import status as st
from vmplane.apiserver.access import node_relations, request_user
from vmplane.apiserver.authz import NODES_GROUP, Attributes, authorize
from vmplane.apiserver.bodies import decode_body
from vmplane.apiserver.context import ApiContext, json_response
from vmplane.store.base import JsonObject

__all__ = ["ACCESS_REVIEW_PATH", "SELF_REVIEW_PATH", "add_review_routes", "review_attributes"]

ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SELF_REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


async def _body(request: web.Request, kind: str) -> JsonObject:
    content_type = request.headers.get("Content-Type", "application/json")
    obj, _ = decode_body(await request.read(), content_type, "Ignore", protobuf_kind=True)
    if obj.get("kind", kind) != kind:
        raise st.bad_request(f'the body of the request must be a {kind}, got "{obj.get("kind")}"')
    return obj


def _str(mapping: Any, key: str) -> str:
    value = mapping.get(key, "") if isinstance(mapping, dict) else ""
    if not isinstance(value, str):
        raise st.bad_request(f"spec.resourceAttributes.{key}: must be a string")
    return value


_EXACTLY_ONE = (
    "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or "
    "resourceAttributes must be specified"
)


def review_attributes(spec: Any) -> Attributes:
    """The attributes a ``SelfSubjectAccessReviewSpec`` asks about (pure)."""
    spec = spec if isinstance(spec, dict) else {}
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(resource, dict) == isinstance(non_resource, dict):
        raise st.bad_request(_EXACTLY_ONE)
    if isinstance(resource, dict):
        return Attributes(
            verb=_str(resource, "verb"),
            api_group=_str(resource, "group"),
            resource=_str(resource, "resource"),
            subresource=_str(resource, "subresource"),
            namespace=_str(resource, "namespace"),
            name=_str(resource, "name"),
        )
    return Attributes(verb=_str(non_resource, "verb"), path=_str(non_resource, "path"))


def add_review_routes(app: web.Application, ctx: ApiContext) -> None:
    """The review routes (register ahead of the generic resource routes)."""

    async def access_review(request: web.Request) -> web.Response:
        user = request_user(request)
        obj = await _body(request, "SelfSubjectAccessReview")
        attrs = review_attributes(obj.get("spec"))
        if NODES_GROUP in user.groups and attrs.resource == "virtualmachineinstances" and attrs.name:
            attrs = await node_relations(ctx.store, attrs)
        decision = authorize(user, attrs)
        status: JsonObject = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        if decision.admission:
            status["denied"] = True
        body = {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": obj.get("spec") or {},
            "status": status,
        }
        return json_response(body, status=201)

    async def self_review(request: web.Request) -> web.Response:
        user = request_user(request)
        await _body(request, "SelfSubjectReview")
        user_info: JsonObject = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            user_info["uid"] = user.uid
        body = {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": timestamp(ctx.clock())},
            "status": {"userInfo": user_info},
        }
        return json_response(body, status=201)

    app.router.add_post(ACCESS_REVIEW_PATH, access_review)
    app.router.add_post(SELF_REVIEW_PATH, self_review)
