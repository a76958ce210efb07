"""Consoles across hosts: each node agent serves its guests' console logs over HTTPS, and the API
server forwards ``.../virtualmachineinstances/X/console`` there, as kube-apiserver forwards ``kubectl
logs`` to the kubelet of the pod's node.

The agent publishes where it serves (``CONSOLE_ENDPOINT``, ``https://HOST:PORT``) and the SHA-256 of
its self-signed certificate (``CONSOLE_CERT_SHA256``) on its Node; the API server connects only to a
server presenting that certificate. The API server authenticates with a token of its own low-privilege
identity ``PROXY_USER`` (it may do nothing in the API), which the agent checks by asking the API who
the token is (a ``SelfSubjectReview`` made with it), as a kubelet delegates authentication to
kube-apiserver; a check is remembered for ``REVIEW_TTL`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from vmplane.api.guest_ops import AGENT_QUERIES
from vmplane.api.node_annotations import CONSOLE_CERT_SHA256, CONSOLE_ENDPOINT
from vmplane.api.resources import NODES
from vmplane.apiserver import status as st
from vmplane.store.base import JsonObject, NotFoundError, Store

__all__ = [
    "PROXY_USER_NAME",
    "DelegatedAuthenticator",
    "NodeConsoleProxy",
    "node_console_app",
]

PROXY_USER_NAME = "system:vmplane:console-proxy"
NODE_CONSOLE_PATH = "/consoles/{namespace}/{name}"
NODE_AGENT_PATH = "/guest-agents/{namespace}/{name}/{what}"
_AGENT_QUERY_TIMEOUT = 15.0
_AGENT_ANSWER_LIMIT = 4 << 20
REVIEW_TTL = 60.0
_ENDPOINT = re.compile(r"^https://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FORWARDED = ("follow", "tailLines")

Respond = Callable[[web.Request, JsonObject], Awaitable[web.StreamResponse]]
Lookup = Callable[[str, str], Awaitable[JsonObject | None]]
#: Asks this node's guest agent of a VMI (OSError when it does not answer).
AgentQuery = Callable[[JsonObject, str], Awaitable[JsonObject]]


def _unavailable(message: str) -> st.ApiError:
    return st.ApiError(code=503, reason="ServiceUnavailable", message=message)


class NodeConsoleProxy:
    """The API server's side: forward a console request to the agent of the VMI's node."""

    def __init__(self) -> None:
        #: Set once the API server has minted its proxy identity (before it serves requests).
        self.token: str | None = None

    async def _node(self, store: Store, vmi: JsonObject) -> tuple[str, str, str]:
        """(node name, endpoint, certificate digest) of the VMI's node."""
        node_name = (vmi.get("status") or {}).get("nodeName")
        if not isinstance(node_name, str) or not node_name:
            raise _unavailable("the VMI is not bound to a node yet: it has no console")
        try:
            node = await store.get(NODES, "", node_name)
        except NotFoundError as err:
            raise _unavailable(f'node "{node_name}" does not exist') from err
        annotations = node.get("metadata", {}).get("annotations") or {}
        endpoint, digest = annotations.get(CONSOLE_ENDPOINT, ""), annotations.get(CONSOLE_CERT_SHA256, "")
        if not (isinstance(endpoint, str) and _ENDPOINT.match(endpoint)) or not (
            isinstance(digest, str) and _SHA256.match(digest)
        ):
            raise _unavailable(f'node "{node_name}" serves no consoles')
        return node_name, endpoint, digest

    async def guest_agent_query(self, store: Store, vmi: JsonObject, what: str) -> JsonObject:
        """Ask the guest agent of the VMI on its node (``what``: a guest-agent subresource).

        OSError when the node or its guest agent does not answer; the node's answer is bounded in
        size and time, since it carries what the guest wrote."""
        node_name, endpoint, digest = await self._node(store, vmi)
        meta = vmi["metadata"]
        url = endpoint + NODE_AGENT_PATH.format(namespace=meta["namespace"], name=meta["name"], what=what)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=_AGENT_QUERY_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers, ssl=aiohttp.Fingerprint(bytes.fromhex(digest))) as answer,
            ):
                body = await answer.content.read(_AGENT_ANSWER_LIMIT + 1)
                if answer.status != 200:
                    message = body[:512].decode(errors="replace")
                    raise OSError(f'node "{node_name}" answered {answer.status}: {message}')
        except (aiohttp.ClientError, TimeoutError) as err:
            raise OSError(f'cannot reach the guest agent on node "{node_name}": {err}') from err
        if len(body) > _AGENT_ANSWER_LIMIT:
            raise OSError(f'node "{node_name}" answered more than {_AGENT_ANSWER_LIMIT} bytes')
        try:
            loaded = json.loads(body)
        except ValueError as err:
            raise OSError(f'node "{node_name}" answered no JSON') from err
        if not isinstance(loaded, dict):
            raise OSError(f'node "{node_name}" answered no JSON object')
        return loaded

    async def forward(self, request: web.Request, store: Store, vmi: JsonObject) -> web.StreamResponse:
        node_name, endpoint, digest = await self._node(store, vmi)
        meta = vmi["metadata"]
        url = endpoint + NODE_CONSOLE_PATH.format(namespace=meta["namespace"], name=meta["name"])
        params = {k: request.query[k] for k in _FORWARDED if k in request.query}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                upstream = await session.get(
                    url, params=params, headers=headers, ssl=aiohttp.Fingerprint(bytes.fromhex(digest))
                )
            except (aiohttp.ClientError, OSError) as err:
                raise _unavailable(f'cannot reach the console of node "{node_name}": {err}') from err
            async with upstream:
                if upstream.status != 200:
                    raise _unavailable(f'node "{node_name}" answered {upstream.status} for the console')
                response = web.StreamResponse(
                    headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")}
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response


class DelegatedAuthenticator:
    """The agent's side: is this bearer token the API server's proxy identity? (asks the API).

    ``user``: the identity the token must be; None admits any identity the API server authenticates
    (the controllers' and agents' ``/metrics``, as the API server's own admits any).
    """

    def __init__(self, *, api_server: str, ca_pem: bytes | None, user: str | None = PROXY_USER_NAME) -> None:
        self._url = api_server.rstrip("/") + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        self._ca = ca_pem
        self._user = user
        self._verified: dict[str, float] = {}

    async def __call__(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        key = hashlib.sha256(token.strip().encode()).hexdigest()
        if self._verified.get(key, 0.0) > time.monotonic():
            return True
        context = ssl.create_default_context(cadata=self._ca.decode() if self._ca else None)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(
                    self._url, json=body, headers={"Authorization": f"Bearer {token.strip()}"}, ssl=context
                ) as response:
                    review: Any = await response.json(content_type=None) if response.status < 300 else {}
            except (aiohttp.ClientError, OSError, ValueError):
                return False
        name = (
            ((review.get("status") or {}).get("userInfo") or {}).get("username")
            if isinstance(review, dict)
            else None
        )
        if not isinstance(name, str) or not name or (self._user is not None and name != self._user):
            return False
        self._verified[key] = time.monotonic() + REVIEW_TTL
        return True


def node_console_app(
    *,
    respond: Respond,
    lookup: Lookup,
    allowed: Callable[[str | None], Awaitable[bool]],
    agent_query: AgentQuery | None = None,
) -> web.Application:
    """The agent's console server for the API server alone: ``GET /consoles/{namespace}/{name}``,
    and with ``agent_query`` ``GET /guest-agents/{namespace}/{name}/{what}``."""

    async def console(request: web.Request) -> web.StreamResponse:
        if not await allowed(request.headers.get("Authorization")):
            return web.json_response(
                st.forbidden("only the API server may read consoles here").status, status=403
            )
        vmi = await lookup(request.match_info["namespace"], request.match_info["name"])
        if vmi is None:
            return web.json_response({"message": "no such VMI on this node"}, status=404)
        return await respond(request, vmi)

    async def guest_agent(request: web.Request) -> web.StreamResponse:
        if not await allowed(request.headers.get("Authorization")):
            return web.json_response(
                st.forbidden("only the API server may ask guest agents").status, status=403
            )
        what = request.match_info["what"]
        vmi = await lookup(request.match_info["namespace"], request.match_info["name"])
        if vmi is None or agent_query is None or what not in AGENT_QUERIES:
            return web.json_response({"message": "no such VMI or query on this node"}, status=404)
        try:
            return web.json_response(await agent_query(vmi, what))
        except OSError as err:
            return web.json_response({"message": str(err)}, status=503)

    app = web.Application()
    app.router.add_get(NODE_CONSOLE_PATH, console)
    app.router.add_get(NODE_AGENT_PATH, guest_agent)
    return app
