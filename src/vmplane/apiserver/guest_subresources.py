"""``PUT subresources.kubevirt.io/v1 .../virtualmachineinstances/{name}/{pause|unpause|reset|softreboot}``,
and ``GET .../{guestosinfo|userlist|filesystemlist}``.

Each checks upstream's rules (``api.guest_ops``: a refusal is upstream's 409 or 403 with its message),
then leaves the request on the VMI for its node agent and answers 202 at once, as start and stop do;
the VMI's ``Paused`` condition (and the VM's ``printableStatus: Paused``) follow once the guest is.
A body, if any, is upstream's ``PauseOptions``/``UnpauseOptions`` (``dryRun: ["All"]`` checks only).

The guest-agent queries answer as upstream does when no agent is connected (409 ``VMI does not have
guest agent connected``); with the agent connected they ask it through ``GuestAgentQueries`` (the
node agent's QEMU driver, in this process or on the VMI's node through ``server.node_console``) and
answer upstream's ``VirtualMachineInstanceGuestAgentInfo``, ``...GuestOSUserList`` or
``...FileSystemList``; a guest agent that stops answering meanwhile is 503.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from aiohttp import web

from vmplane.api.guest_ops import (
    AGENT_QUERIES,
    GuestAction,
    GuestOpRefusedError,
    check_agent_query,
    check_request,
    requested_annotations,
)
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.apiserver import status as st
from vmplane.apiserver.bodies import optional_json
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.registry import ResourceType
from vmplane.store.base import ConflictError, NotFoundError

__all__ = ["GUEST_OPERATION_PATH", "GuestAgentQueries", "add_guest_operation_routes"]

GUEST_OPERATION_PATH = (
    "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{action}"
)
_ACTIONS = {a.value: a for a in GuestAction}
_REASONS = {409: "Conflict", 403: "Forbidden"}


class GuestAgentQueries(Protocol):
    """Asks a VMI's guest agent (``what``: ``guestosinfo``, ``userlist`` or ``filesystemlist``)."""

    async def guest_agent_query(self, vmi: dict[str, Any], what: str) -> dict[str, Any]:
        """The answer in upstream's shape; OSError when the agent cannot be reached or does not answer."""
        ...


def _dry_run(body: Any) -> bool:
    if body is None:
        return False
    if not isinstance(body, dict):
        raise st.bad_request("body: expected an options object")
    dry_run = body.get("dryRun")
    if dry_run is None:
        return False
    if not isinstance(dry_run, list) or not all(v == "All" for v in dry_run):
        raise st.bad_request('dryRun: the only supported value is ["All"]')
    return bool(dry_run)


class _GuestOperations:
    def __init__(self, ctx: ApiContext, agents: GuestAgentQueries | None) -> None:
        self._ctx = ctx
        self._agents = agents
        vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        assert vmi_type is not None
        self._vmi_type: ResourceType = vmi_type

    async def handle(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        action = _ACTIONS.get(request.match_info["action"])
        if action is None:
            raise st.path_not_found()
        dry_run = _dry_run(optional_json(await request.read()))
        token = uuid.uuid4().hex
        for _ in range(self._ctx.settings.max_conflict_retries):
            try:
                await self._request(namespace, name, action, token=token, dry_run=dry_run)
            except ConflictError:
                continue
            return web.Response(status=202)
        raise st.conflict(self._vmi_type, name)

    async def query(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if request.match_info["action"] not in AGENT_QUERIES:
            raise st.path_not_found()
        try:
            raw = await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError as err:
            raise st.not_found(self._vmi_type, name) from err
        try:
            check_agent_query(VirtualMachineInstance.model_validate(raw))
        except GuestOpRefusedError as err:
            raise st.ApiError(code=err.code, reason=_REASONS[err.code], message=err.message) from err
        if self._agents is None:
            raise st.ApiError(
                code=501, reason="NotImplemented", message="this API server reaches no guest agents"
            )
        try:
            answer = await self._agents.guest_agent_query(raw, request.match_info["action"])
        except OSError as err:
            raise st.ApiError(code=503, reason="ServiceUnavailable", message=str(err)) from err
        return web.json_response(answer)

    async def _request(
        self, namespace: str, name: str, action: GuestAction, *, token: str, dry_run: bool
    ) -> None:
        try:
            raw = await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError as err:
            raise st.not_found(self._vmi_type, name) from err
        try:
            check_request(VirtualMachineInstance.model_validate(raw), action)
        except GuestOpRefusedError as err:
            raise st.ApiError(code=err.code, reason=_REASONS[err.code], message=err.message) from err
        if dry_run:
            return
        metadata = raw["metadata"]
        annotations = requested_annotations(metadata.get("annotations") or {}, action, token=token)
        await self._ctx.store.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "metadata": {**metadata, "annotations": annotations}}
        )


def add_guest_operation_routes(
    app: web.Application, ctx: ApiContext, agents: GuestAgentQueries | None = None
) -> None:
    """Route the guest operations and agent queries (after the console and stream routes, whose GETs
    share this path's shape, and before the catch-alls); ``agents`` answers the queries."""
    handlers = _GuestOperations(ctx, agents)
    app.router.add_route("PUT", GUEST_OPERATION_PATH, handlers.handle)
    app.router.add_get(GUEST_OPERATION_PATH, handlers.query)
