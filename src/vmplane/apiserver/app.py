"""Composition of the API server: ``create_app`` wires store, registry and token into aiohttp;
``run_server`` opens the data directory, serves, and runs the background tasks (controllers, node
agent) that other packages hand it, until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aiohttp import web

from vmplane.api.common_instancetypes import common_objects
from vmplane.api.kubevirt_defaults import default_kubevirt
from vmplane.api.resources import KUBEVIRTS
from vmplane.apiserver import discovery, openapi_protobuf
from vmplane.apiserver import status as st
from vmplane.apiserver.access import USER_KEY, check_access
from vmplane.apiserver.authz import User
from vmplane.apiserver.connections import ConnectionGuard, ConnectionLimits
from vmplane.apiserver.context import ApiContext, ServerSettings, json_response, utc_now
from vmplane.apiserver.door import InProcessDoor
from vmplane.apiserver.handlers import ResourceHandlers
from vmplane.apiserver.http_edge import handler_factory, header_guard
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
from vmplane.apiserver.metrics_route import add_metrics_route, metrics_middleware
from vmplane.apiserver.openapi import OpenApiDocs
from vmplane.apiserver.protobuf_responses import protobuf_responses
from vmplane.apiserver.registry import Registry
from vmplane.apiserver.reviews import add_review_routes
from vmplane.apiserver.security import TlsFiles, ensure_self_signed, load_or_create_token, server_ssl_context
from vmplane.apiserver.shared_identity import SharedTokens, mirror_file_tokens, shared_tls
from vmplane.apiserver.tokens import Authenticate, TokenAuthenticator, either, seed_admin_token, single_token
from vmplane.apiserver.ui import SessionStore, add_ui_routes, is_console_path
from vmplane.metrics import Metrics
from vmplane.store.base import AlreadyExistsError, JsonObject, Store, StoreError
from vmplane.store.sqlite import SqliteStore

__all__ = ["ListenAddress", "Plane", "bootstrap", "bound_url", "create_app", "is_loopback", "run_server"]

log = logging.getLogger("vmplane.apiserver")


class Plane(Protocol):
    """What runs beside the API: its kinds, its extra routes, and its loops (controllers, agent)."""

    registry: Registry

    def add_routes(self, app: web.Application, ctx: ApiContext) -> None:
        """Add routes ahead of the generic resource routes."""
        ...

    def instrument(self, metrics: Metrics) -> None:
        """Report to ``metrics`` (queues, hotplugs, the fleet's series)."""
        ...

    async def run(self, door: InProcessDoor) -> None:
        """Run until cancelled, reaching the API through ``door``."""
        ...


_CONTEXT = web.AppKey("vmplane_context", ApiContext)


def _error_response(err: st.ApiError) -> web.Response:
    response = json_response(err.status, status=err.code)
    if err.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="vmplane"'
    return response


def _middleware(
    authenticate: Authenticate, sessions: SessionStore | None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        response: web.StreamResponse
        try:
            if sessions is not None and is_console_path(request.path):
                response = await handler(request)  # the console's page; /ui/session checks itself
            else:
                authorization = (
                    sessions.authorization(request.method, request.cookies, request.headers)
                    if sessions is not None
                    else request.headers.get("Authorization")
                )
                await check_access(
                    request,
                    authenticate=authenticate,
                    store=request.app[_CONTEXT].store,
                    authorization=authorization,
                )
                response = await handler(request)
        except st.ApiError as err:
            response = _error_response(err)
        except web.HTTPNotFound:
            response = _error_response(st.path_not_found())
        except web.HTTPMethodNotAllowed:
            response = _error_response(st.method_not_allowed())
        except web.HTTPRequestEntityTooLarge:
            response = _error_response(st.too_large(request.app[_CONTEXT].settings.body_limit))
        except Exception as err:  # the edge: anything unexpected is a 500 Status, and logged
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _error_response(
                st.ApiError(code=500, reason="InternalError", message=f"Internal error occurred: {err}")
            )
        user = request.get(USER_KEY)
        log.debug(
            "%s %s -> %d in %.1f ms by %s",
            request.method,
            request.path_qs,
            response.status,
            (time.monotonic() - started) * 1000,
            user.name if isinstance(user, User) else "-",
        )
        return response

    return middleware


def _discovery_routes(app: web.Application, registry: Registry) -> None:
    openapi = OpenApiDocs(registry)

    def chosen(request: web.Request, *, core: bool, legacy: JsonObject) -> web.Response:
        version = discovery.choose_discovery(request.headers.get("Accept"))
        if version is None:
            response = json_response(legacy)
        else:
            response = json_response(discovery.aggregated(registry, core=core, version=version))
            content_type = discovery.AGGREGATED_V2 if version == "v2" else discovery.AGGREGATED_V2BETA1
            response.headers["Content-Type"] = content_type
        response.headers["Vary"] = "Accept"
        return response

    async def version(_: web.Request) -> web.Response:
        return json_response(discovery.version_info())

    async def api(request: web.Request) -> web.Response:
        return chosen(request, core=True, legacy=discovery.api_versions())

    async def apis(request: web.Request) -> web.Response:
        return chosen(request, core=False, legacy=discovery.api_group_list(registry))

    async def core_v1(_: web.Request) -> web.Response:
        return json_response(discovery.api_resource_list(registry, "", "v1"))

    async def group(request: web.Request) -> web.Response:
        name = request.match_info["group"]
        if name not in discovery.all_groups(registry):
            raise st.path_not_found()
        return json_response(discovery.api_group(registry, name))

    async def group_version(request: web.Request) -> web.Response:
        name, version_name = request.match_info["group"], request.match_info["version"]
        known = discovery.REVIEW_GROUPS.get(name) or (
            registry.versions(name) if name in registry.groups() else ()
        )
        if version_name not in known:
            raise st.path_not_found()
        return json_response(discovery.api_resource_list(registry, name, version_name))

    def raw(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        return handler

    async def openapi_v2(request: web.Request) -> web.Response:
        media_type = openapi_protobuf.choose_media_type(request.headers.get("Accept"))
        if media_type is None:
            raise st.not_acceptable([openapi_protobuf.JSON, openapi_protobuf.MEDIA_TYPE])
        body = openapi.v2_protobuf if media_type == openapi_protobuf.MEDIA_TYPE else openapi.v2
        return web.Response(body=body, headers={"Content-Type": media_type, "Vary": "Accept"})

    async def openapi_v3(request: web.Request) -> web.Response:
        body = openapi.v3_by_path.get(request.match_info["path"])
        if body is None:
            raise st.path_not_found()
        return web.Response(body=body, content_type="application/json")

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    router = app.router
    router.add_get("/version", version)
    router.add_get("/api", api)
    router.add_get("/api/v1", core_v1)
    router.add_get("/apis", apis)
    router.add_get("/apis/{group}", group)
    router.add_get("/apis/{group}/{version}", group_version)
    router.add_get("/openapi/v2", openapi_v2)
    router.add_get("/openapi/v3", raw(openapi.v3_index))
    router.add_get("/openapi/v3/{path:.+}", openapi_v3)
    for path in ("/healthz", "/readyz", "/livez"):
        router.add_get(path, healthy)


def create_app(
    *,
    store: Store,
    registry: Registry,
    token: str | None = None,
    authenticate: Authenticate | None = None,
    settings: ServerSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
    extra_routes: Callable[[web.Application, ApiContext], None] | None = None,
    metrics: Metrics | None = None,
    sessions: SessionStore | None = None,
) -> web.Application:
    """The API as an aiohttp application; the caller owns the store's lifetime.

    ``authenticate`` maps an ``Authorization`` header to a user (``TokenAuthenticator``); ``token``
    instead admits that one bearer token, as admin. ``extra_routes`` adds routes (e.g.
    subresources) ahead of the generic resource routes. ``metrics``: count requests and serve
    ``/metrics`` from it. ``sessions``: serve the web console at ``/ui/``, whose session cookie then
    authenticates API requests as well as a bearer token does.
    """
    if authenticate is None:
        if token is None:
            raise TypeError("create_app needs token or authenticate")
        authenticate = single_token(token)
    settings = settings or ServerSettings()
    ctx = ApiContext(store=store, registry=registry, settings=settings, clock=clock)
    counted = [metrics_middleware(metrics)] if metrics is not None else []
    app = web.Application(
        middlewares=[header_guard, *counted, _middleware(authenticate, sessions), protobuf_responses],
        client_max_size=settings.body_limit,
    )
    app[_CONTEXT] = ctx

    async def stop_caches(_: web.Application) -> None:
        await ctx.caches.close()

    app.on_cleanup.append(stop_caches)
    _discovery_routes(app, registry)
    add_review_routes(app, ctx)
    if metrics is not None:
        add_metrics_route(app, metrics)
    if sessions is not None:
        add_ui_routes(app, sessions=sessions, authenticate=authenticate, store=store, clock=clock)
    if extra_routes is not None:
        extra_routes(app, ctx)
    handlers = ResourceHandlers(ctx)
    app.router.add_route("*", "/api/v1/{tail:.+}", handlers.core)
    app.router.add_route("*", "/apis/{group}/{version}/{tail:.+}", handlers.grouped)
    return app


_BOOTSTRAP: tuple[tuple[str, JsonObject], ...] = (
    (
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    ),
    (
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kubevirt"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    ),
    (
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    ),
    (
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-node-lease"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    ),
    (
        "kubevirts.kubevirt.io",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": default_kubevirt({})["spec"],
        },
    ),
)


async def bootstrap(store: Store) -> None:
    """The objects a fresh installation has: namespaces ``default``, ``kubevirt``, ``kube-system`` (the
    controllers' leader Lease) and ``kube-node-lease`` (the node agents' Leases), the KubeVirt CR, and
    the default cluster instance types and preferences (``api.common_instancetypes``; one the user
    changed is left as it is)."""
    for resource, obj in (*_BOOTSTRAP, *common_objects()):
        with contextlib.suppress(AlreadyExistsError):
            await store.create(resource, obj)
    await _default_stored_kubevirts(store)


async def _default_stored_kubevirts(store: Store) -> None:
    """Give KubeVirt objects stored before vmplane defaulted them their defaults, once, so that every
    read shows upstream's structure (admission defaults every later write)."""
    for obj in (await store.list(KUBEVIRTS)).items:
        defaulted = default_kubevirt(obj)
        if defaulted != obj:
            with contextlib.suppress(StoreError):
                await store.update(KUBEVIRTS, defaulted)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str = "127.0.0.1"
    port: int = 6443

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]") or "127.0.0.1", int(port))


def _tls_for(data_dir: Path, listen: ListenAddress, cert: Path | None, key: Path | None) -> TlsFiles:
    if cert is not None and key is not None:
        return TlsFiles(cert=cert, key=key, ca=None)
    if cert is not None or key is not None:
        raise ValueError("--tls-cert and --tls-key go together")
    # TLS on loopback too: client-go (kubectl) never sends a bearer token over plain HTTP.
    return ensure_self_signed(data_dir, listen.host)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def bound_url(address: tuple[object, ...]) -> str:
    """``https://HOST:PORT`` of a bound socket's address, IPv6 hosts in brackets."""
    host, port = str(address[0]), address[1]
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


async def run_server(
    *,
    data_dir: Path,
    listen: ListenAddress,
    plane: Callable[[Store], Plane] | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    settings: ServerSettings | None = None,
    on_ready: Callable[[Path], None] | None = None,
    limits: ConnectionLimits | None = None,
    metrics: Metrics | None = None,
    open_store: Callable[[Path], Awaitable[Store]] | None = None,
    shared_identity: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT, with the control plane ``plane`` builds on the store running alongside.

    ``open_store`` opens the store given the data directory (default: SQLite in it, ``store.db``).

    If the plane's ``run`` ends with an error, the server stops and the error is re-raised.
    ``limits``: header and idle timeouts and the connection cap (see ``apiserver.connections``).
    ``metrics``: where this process's metrics go (a new registry when None), served at ``/metrics``.
    ``shared_identity``: the store is shared with other API servers (etcd): admit the tokens of the
    store too, publish this data directory's to it, and serve a certificate from the store's CA
    (see ``apiserver.shared_identity``).
    """
    limits = limits or ConnectionLimits()
    metrics = metrics or Metrics()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)  # tightened if it existed: it holds the store, token and TLS keys
    token = load_or_create_token(data_dir)
    seed_admin_token(data_dir, token)
    store = (
        await open_store(data_dir)
        if open_store is not None
        else SqliteStore.open(data_dir / "store.db", observe_write=metrics.store_write)
    )
    runner: web.AppRunner | None = None
    listener: asyncio.Server | None = None
    tasks: list[asyncio.Task[None]] = []
    identity_tasks: list[asyncio.Task[None]] = []
    door = InProcessDoor()
    authenticate: Authenticate = TokenAuthenticator(data_dir).authenticate
    try:
        tls = (
            await shared_tls(store, data_dir, listen.host)
            if shared_identity and tls_cert is None and tls_key is None
            else _tls_for(data_dir, listen, tls_cert, tls_key)
        )
        if shared_identity:
            shared = SharedTokens(store)
            identity_tasks = [
                asyncio.create_task(shared.run()),
                asyncio.create_task(mirror_file_tokens(store, data_dir)),
            ]
            await shared.wait_synced()
            authenticate = either(authenticate, shared.authenticate)
        await bootstrap(store)
        built = plane(store) if plane is not None else None
        if built is not None:
            built.instrument(metrics)
        app = create_app(
            store=store,
            registry=built.registry if built is not None else default_registry(),
            authenticate=door.authenticate(authenticate),
            settings=settings,
            extra_routes=built.add_routes if built is not None else None,
            metrics=metrics,
            sessions=SessionStore(),
        )
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=limits.idle_timeout,
        )
        await runner.setup()
        await door.open(runner)
        assert runner.server is not None
        # Not web.TCPSite: the connections go through the header timeout and the connection cap.
        listener = await asyncio.get_running_loop().create_server(
            ConnectionGuard(handler_factory(runner.server, idle_timeout=limits.idle_timeout), limits),
            listen.host,
            listen.port,
            ssl=server_ssl_context(tls),
            ssl_handshake_timeout=limits.header_timeout,
        )
        bound = [sock.getsockname() for sock in listener.sockets]
        port = bound[0][1]
        host = listen.host if listen.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        ca_pem = tls.ca.read_bytes() if tls.ca else None
        path = write_kubeconfig(
            data_dir, render_kubeconfig(server=f"https://{host}:{port}", token=token, ca_pem=ca_pem)
        )
        for address in bound:
            log.info("serving on %s", bound_url(address))
        if not all(is_loopback(address[0]) for address in bound):
            log.warning(
                "listening on a non-loopback address (%s): anyone who can reach it can try; TLS and the "
                "API tokens are all that protect it",
                ", ".join(bound_url(address) for address in bound),
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Before the ready line: whoever read it may stop us at once. Only the main thread can take
            # signals; embedded servers (tests) are stopped by cancelling.
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(path)
        tasks = [asyncio.create_task(built.run(door))] if built is not None else []
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in [*tasks, *identity_tasks]:
            task.cancel()
        await asyncio.gather(*tasks, *identity_tasks, return_exceptions=True)
        if listener is not None:
            listener.close()
        await door.close()
        if runner is not None:
            await runner.cleanup()
        await store.close()
