"""``GET /metrics`` and the request metrics kube-apiserver exports, as one aiohttp middleware.

``/metrics`` is a non-resource path, so any authenticated identity may read it (``authz``); without a
token it is ``401`` like every other path. Labels come from the same ``request_attributes`` the
authorizer reads, with Kubernetes' verbs (``LIST``, ``WATCH``, ``POST``...) and scopes.

The label values must stay bounded whatever clients send: a verb outside Kubernetes' set is
``other`` (as kube-apiserver's ``cleanVerb`` does), and the group, resource and subresource are kept
only for requests that were authenticated, authorized and routed; a ``401``/``403``/``404``/``405``
is counted without them, so no unauthenticated path can mint a series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from vmplane.apiserver.authz import READ_VERBS, Attributes
from vmplane.apiserver.request_info import request_attributes
from vmplane.metrics import CONTENT_TYPE, Metrics

__all__ = ["add_metrics_route", "metrics_middleware"]

_WIRE_VERBS = {"create": "POST", "update": "PUT"}
_KNOWN_VERBS = frozenset(
    {"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "HEAD", "OPTIONS"}
)
_UNROUTED = frozenset({401, 403, 404, 405})
_FOLLOWED = ("console",)


def _scope(attrs: Attributes) -> str:
    if attrs.name:
        return "resource"
    return "namespace" if attrs.namespace else "cluster"


def _long_running(attrs: Attributes, follow: str | None) -> bool:
    return attrs.verb == "watch" or (attrs.subresource in _FOLLOWED and follow == "true")


def _observe(metrics: Metrics, attrs: Attributes, *, code: int, started: float, long_running: bool) -> None:
    verb = _WIRE_VERBS.get(attrs.verb, attrs.verb.upper())
    routed = code not in _UNROUTED
    metrics.observe_request(
        verb=verb if verb in _KNOWN_VERBS else "other",
        group=attrs.api_group if routed else "",
        resource=attrs.resource if routed else "",
        subresource=attrs.subresource if routed else "",
        scope=_scope(attrs) if attrs.resource and routed else "",
        code=code,
        started=started,
        long_running=long_running,
    )


def metrics_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Count and time every request (outermost, so it sees the status code actually sent)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        attrs = request_attributes(request.method, request.path, request.query)
        long_running = _long_running(attrs, request.query.get("follow"))
        code: int | None = 500
        try:
            if long_running:
                response = await handler(request)
            else:
                with metrics.inflight_request(mutating=attrs.verb not in READ_VERBS):
                    response = await handler(request)
            code = response.status
            return response
        except asyncio.CancelledError:
            # The client went away. A watch or a followed console ends that way as a rule, after
            # streaming its 200; any other request it cut short had no answer to count.
            code = 200 if long_running else None
            raise
        finally:
            if code is not None:
                _observe(metrics, attrs, code=code, started=started, long_running=long_running)

    return middleware


def add_metrics_route(app: web.Application, metrics: Metrics) -> None:
    """``GET /metrics``: the Prometheus text format."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", scrape)
