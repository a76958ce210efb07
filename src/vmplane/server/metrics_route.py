"""``GET /metrics`` and the request metrics kube-apiserver exports, as one aiohttp middleware.

``/metrics`` is a non-resource path, so any authenticated identity may read it (``authz``); without a
token it is ``401`` like every other path. Labels come from the same ``request_attributes`` the
authorizer reads, with Kubernetes' verbs (``LIST``, ``WATCH``, ``POST``...) and scopes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from vmplane.metrics import CONTENT_TYPE, Metrics
from vmplane.server.authz import READ_VERBS, Attributes
from vmplane.server.request_info import request_attributes

__all__ = ["add_metrics_route", "metrics_middleware"]

_WIRE_VERBS = {"create": "POST", "update": "PUT"}
_FOLLOWED = ("console",)


def _scope(attrs: Attributes) -> str:
    if attrs.name:
        return "resource"
    return "namespace" if attrs.namespace else "cluster"


def _long_running(attrs: Attributes, follow: str | None) -> bool:
    return attrs.verb == "watch" or (attrs.subresource in _FOLLOWED and follow == "true")


def metrics_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Count and time every request (outermost, so it sees the status code actually sent)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        attrs = request_attributes(request.method, request.path, request.query)
        long_running = _long_running(attrs, request.query.get("follow"))
        code = 500
        try:
            if long_running:
                response = await handler(request)
            else:
                with metrics.inflight_request(mutating=attrs.verb not in READ_VERBS):
                    response = await handler(request)
            code = response.status
            return response
        finally:
            metrics.observe_request(
                verb=_WIRE_VERBS.get(attrs.verb, attrs.verb.upper()),
                group=attrs.api_group,
                resource=attrs.resource,
                subresource=attrs.subresource,
                scope=_scope(attrs) if attrs.resource else "",
                code=code,
                started=started,
                long_running=long_running,
            )

    return middleware


def add_metrics_route(app: web.Application, metrics: Metrics) -> None:
    """``GET /metrics``: the Prometheus text format."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", scrape)
