"""Requests refused before anything reads them: header values that are not text.

aiohttp's parser already answers 400 for NUL and other control bytes in a header; bytes that are not
UTF-8 pass it and are decoded with ``surrogateescape``, so that the first ``.encode()`` on such a
value (the bearer token comparison, say) raised ``UnicodeEncodeError`` and answered 500. No
Kubernetes client sends such headers; they get a 400 ``Status`` naming the header here, before
authentication or any handler sees them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from vmplane.server import status as st
from vmplane.server.context import json_response

__all__ = ["header_guard", "invalid_header"]


def invalid_header(headers: Mapping[str, str]) -> str | None:
    """The name of the first header whose value is not valid text, if any."""
    for name, value in headers.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return name
    return None


@web.middleware
async def header_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    name = invalid_header(request.headers)
    if name is not None:
        err = st.bad_request(f"invalid header {name}: the value is not valid UTF-8 text")
        return json_response(err.status, status=err.code)
    return await handler(request)
