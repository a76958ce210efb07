"""The node agent's guest-agent route, which only the API server may use, on a real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vmplane.apiserver.node_console import node_console_app

VMI: dict[str, Any] = {"metadata": {"namespace": "default", "name": "vm"}}


async def _respond(request: web.Request, vmi: dict[str, Any]) -> web.StreamResponse:
    return web.Response(text="log")


async def _lookup(namespace: str, name: str) -> dict[str, Any] | None:
    return VMI if (namespace, name) == ("default", "vm") else None


async def _answers(vmi: dict[str, Any], what: str) -> dict[str, Any]:
    return {"hostname": "g", "what": what}


async def _silent(vmi: dict[str, Any], what: str) -> dict[str, Any]:
    raise OSError("vm: guest agent: no answer in time")


@asynccontextmanager
async def node(
    query: Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]], *, admitted: bool = True
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def allowed(authorization: str | None) -> bool:
        return admitted

    app = node_console_app(respond=_respond, lookup=_lookup, allowed=allowed, agent_query=query)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_api_server_gets_the_guest_agents_answer() -> None:
    async with node(_answers) as client:
        answer = await client.get("/guest-agents/default/vm/guestosinfo")
        assert (answer.status, await answer.json()) == (200, {"hostname": "g", "what": "guestosinfo"})


async def test_anyone_else_is_forbidden() -> None:
    async with node(_answers, admitted=False) as client:
        assert (await client.get("/guest-agents/default/vm/guestosinfo")).status == 403


async def test_a_query_that_is_no_subresource_is_not_found() -> None:
    async with node(_answers) as client:
        assert (await client.get("/guest-agents/default/vm/guest-exec")).status == 404


async def test_a_vmi_not_on_this_node_is_not_found() -> None:
    async with node(_answers) as client:
        assert (await client.get("/guest-agents/default/other/userlist")).status == 404


async def test_a_silent_guest_agent_is_unavailable() -> None:
    async with node(_silent) as client:
        answer = await client.get("/guest-agents/default/vm/userlist")
        assert (answer.status, (await answer.json())["message"]) == (
            503,
            "vm: guest agent: no answer in time",
        )
