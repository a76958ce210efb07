"""``/ui/``: the web console's page and assets (inside the package: no CDN), and its session.

The console is a small hand-written page (``assets/*.js``, ES modules) that talks to the API itself, with the
session cookie: these routes only serve the files and sign in and out. Everything the console reads
or writes is an ordinary API request, so authorization, admission and the ``Status`` of an error
are the API's own. The routes are outside the API's token check (a signed-out browser must reach the
sign-in page); ``/ui/session`` and ``/ui/restart-plan`` check the token or the cookie themselves.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import datetime
from importlib import resources

from aiohttp import web

from vmplane.apiserver import status as st
from vmplane.apiserver.authz import Attributes, User, authorize
from vmplane.apiserver.context import json_response
from vmplane.apiserver.tokens import Authenticate
from vmplane.apiserver.ui.plan import PLAN_PATH, plan_handler
from vmplane.apiserver.ui.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, SessionStore, set_session_cookie
from vmplane.store.base import Store

__all__ = ["UI_PREFIX", "add_ui_routes", "is_console_path"]

UI_PREFIX = "/ui"
_ASSETS = {
    **{
        f"{module}.js": "text/javascript" for module in ("app", "api", "dom", "vm", "yaml", "fleet", "vmpage")
    },
    "app.css": "text/css",
    "index.html": "text/html",
}
#: The page loads only its own files and talks only to its own origin.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_MAX_TOKEN = 4096


def is_console_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def _asset(name: str) -> bytes:
    return (resources.files("vmplane.apiserver.ui") / "assets" / name).read_bytes()


def _may(user: User, verb: str, group: str, resource: str, subresource: str = "") -> bool:
    attrs = Attributes(verb=verb, api_group=group, resource=resource, subresource=subresource, name="x")
    return authorize(user, attrs).allowed


def _described(user: User, csrf: str) -> web.Response:
    """What the page needs to know about its user: who, the CSRF token, which controls to show."""
    return json_response(
        {
            "user": user.name,
            "csrf": csrf,
            "canWrite": _may(user, "patch", "kubevirt.io", "virtualmachines"),
            "canConsole": _may(user, "get", "subresources.kubevirt.io", "virtualmachineinstances", "console"),
        }
    )


def add_ui_routes(
    app: web.Application,
    *,
    sessions: SessionStore,
    authenticate: Authenticate,
    store: Store,
    clock: Callable[[], datetime],
) -> None:
    """The page, its assets, ``/ui/session`` (POST signs in, GET describes, DELETE signs out) and
    ``/ui/restart-plan`` (the next maintenance window's batches, read-only)."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", headers=_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _ASSETS:  # a fixed list: no path from the request reaches the file system
            raise st.path_not_found()
        return web.Response(body=_asset(name), headers={**_HEADERS, "Content-Type": _ASSETS[name]})

    async def to_index(_: web.Request) -> web.Response:
        raise web.HTTPFound(UI_PREFIX + "/")

    async def sign_in(request: web.Request) -> web.Response:
        # JSON only: a cross-site form cannot send it without a CORS preflight, which is never
        # granted, so no other site can sign a browser in as someone else.
        if request.content_type != "application/json":
            raise st.unsupported_media_type(["application/json"])
        try:
            body = json.loads(await request.read())
        except ValueError as err:
            raise st.bad_request('sign-in expects a JSON body {"token": "..."}') from err
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip() or len(token) > _MAX_TOKEN:
            raise st.bad_request("token: Required value: paste an API token to sign in")
        authorization = f"Bearer {token.strip()}"
        user = authenticate(authorization)
        if user is None:
            raise st.unauthorized()
        session = sessions.create(authorization)
        response = _described(user, session.csrf)
        set_session_cookie(response, session.id, max_age=int(sessions.lifetime))
        return response

    def current(request: web.Request) -> tuple[str, User, str]:
        session = sessions.get(request.cookies.get(COOKIE))
        user = authenticate(session.authorization) if session is not None else None
        if session is None or user is None:
            raise st.unauthorized()
        return session.id, user, session.csrf

    async def describe(request: web.Request) -> web.Response:
        _, user, csrf = current(request)
        return _described(user, csrf)

    async def sign_out(request: web.Request) -> web.Response:
        session_id, _, csrf = current(request)
        presented = request.headers.get(CSRF_HEADER, "").encode()
        if request.method not in SAFE_METHODS and not hmac.compare_digest(presented, csrf.encode()):
            raise st.forbidden("the console's CSRF token is missing or wrong: reload the page")
        sessions.drop(session_id)
        response = json_response(st.status_object(code=200, reason="", message="", success=True))
        response.del_cookie(COOKIE, path="/")
        return response

    router = app.router
    router.add_get(UI_PREFIX, to_index)
    router.add_get(UI_PREFIX + "/", index)
    router.add_get(UI_PREFIX + "/assets/{name}", asset)
    router.add_post(UI_PREFIX + "/session", sign_in)
    router.add_get(UI_PREFIX + "/session", describe)
    router.add_delete(UI_PREFIX + "/session", sign_out)
    router.add_get(UI_PREFIX + PLAN_PATH, plan_handler(store, clock, lambda request: current(request)[1]))
