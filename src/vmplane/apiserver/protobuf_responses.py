"""Protobuf answers for the clients that ask for them first.

client-go's typed clients (kubectl's ``create namespace``, ``describe node``, controllers built on
client-go) send ``Accept: application/vnd.kubernetes.protobuf, application/json``; kube-apiserver
answers them in protobuf for the built-in kinds. This middleware does the same for the kinds (and
their lists) in :data:`vmplane.apiserver.protobuf.KINDS`: a JSON answer of such a kind is re-encoded
when protobuf comes first in ``Accept``. Everything else (custom kinds, Tables, Status errors,
watch streams) stays JSON, which those clients accept too and read by the answer's Content-Type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from vmplane.apiserver import protobuf
from vmplane.apiserver.discovery import accept_entries

__all__ = ["prefers_protobuf", "protobuf_responses", "reencoded"]

log = logging.getLogger(__name__)
_JSON_TYPES = ("application/json", "application/*", "*/*")


def prefers_protobuf(accept: str | None) -> bool:
    """True when the first representation ``accept`` names is plain Kubernetes protobuf."""
    for media_type, params in accept_entries(accept):
        if media_type == protobuf.MEDIA_TYPE:
            return "as" not in params
        if media_type in _JSON_TYPES:
            return False
    return False


def reencoded(response: web.StreamResponse, accept: str | None) -> web.StreamResponse:
    """``response`` in protobuf if the client prefers it and its kind has a message; else as it is."""
    if not (
        isinstance(response, web.Response)
        and response.content_type == "application/json"
        and isinstance(response.body, bytes)
        and prefers_protobuf(accept)
    ):
        return response
    try:
        obj = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(obj, dict) or not protobuf.serves(str(obj.get("apiVersion")), str(obj.get("kind"))):
        return response
    try:
        body = protobuf.encode_object(obj)
    except protobuf.ProtobufError as err:
        # A stored value of a type its message does not allow (an admin may write anything): the
        # client accepts JSON as well, so it gets that rather than an error.
        log.warning("answering %s in JSON: %s", obj.get("kind"), err)
        return response
    answer = web.Response(body=body, status=response.status, content_type=protobuf.MEDIA_TYPE)
    for warning in response.headers.getall("Warning", []):
        answer.headers.add("Warning", warning)
    return answer


@web.middleware
async def protobuf_responses(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return reencoded(await handler(request), request.headers.get("Accept"))
