"""Requests refused before anything reads them: malformed HTTP, and header values that are not text.

aiohttp's parser answers 400 for NUL and other control bytes in a header, but as plain text and with
a traceback in the log for each one; :class:`StatusRequestHandler` answers such requests with a
Kubernetes ``Status`` and logs one line. Bytes that are not
UTF-8 pass the parser and are decoded with ``surrogateescape``, so that the first ``.encode()`` on such a
value (the bearer token comparison, say) raised ``UnicodeEncodeError`` and answered 500. No
Kubernetes client sends such headers; they get a 400 ``Status`` naming the header here, before
authentication or any handler sees them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from aiohttp import web

from vmplane.apiserver import status as st
from vmplane.apiserver.context import json_response

__all__ = ["StatusRequestHandler", "handler_factory", "header_guard", "invalid_header"]

log = logging.getLogger(__name__)


class StatusRequestHandler(web.RequestHandler):
    """aiohttp's protocol, answering requests its parser refuses (4xx) with a ``Status``."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        reason = str(getattr(exc, "message", "") or message or exc or "").strip().splitlines()
        detail = reason[0] if reason else "malformed request"
        log.info("refused a malformed request from %s: %s", request.remote, detail)
        err = st.ApiError(code=status, reason="BadRequest", message=f"malformed HTTP request: {detail}")
        response = json_response(err.status, status=status)
        response.force_close()
        return response


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


def handler_factory(server: web.Server, *, idle_timeout: float) -> Callable[[], StatusRequestHandler]:
    """The protocol factory for ``server``'s connections (what ``web.Server()`` makes, with Status errors)."""

    def make() -> StatusRequestHandler:
        return StatusRequestHandler(
            server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=idle_timeout,
            access_log=cast(logging.Logger, None),  # None turns it off, as AppRunner(access_log=None)
        )

    return make
