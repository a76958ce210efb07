"""``subresources.kubevirt.io/v1``: ``start``, ``stop``, ``restart``, ``migrate`` (upstream rules; migrate
in ``migrate_subresource``) and ``revert``.

start/stop/restart record what the user asked for (a run strategy and state-change requests) and
return 202; the VM controller acts on them. ``revert`` writes the running values back into the VM
template for the given pending paths (all when none are given) and returns the updated VM; a change
that came from switching the VM's instance type or preference is reverted by switching it back to the
one the running guest booted with (its boot snapshot names it), all of its paths at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vmplane.api.lifecycle import LifecycleConflictError, request_restart, request_start, request_stop
from vmplane.api.resources import CONTROLLER_REVISIONS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.validation import validate_vm
from vmplane.api.vm import ChangeSource, VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.apiserver import status as st
from vmplane.apiserver.bodies import optional_json
from vmplane.apiserver.context import ApiContext, json_response
from vmplane.apiserver.migrate_subresource import migrate
from vmplane.apiserver.registry import ResourceType
from vmplane.apiserver.typed_kinds import ClusterView
from vmplane.rollout.plan import TEMPLATE_SPEC_PREFIX, plan
from vmplane.rollout.revert import revert
from vmplane.rollout.vm_effective import vm_effective
from vmplane.store.base import ConflictError, JsonObject, NotFoundError

__all__ = ["SUBRESOURCE_PATH", "add_subresource_routes"]

SUBRESOURCE_PATH = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/{action}"
_ACTIONS = ("start", "stop", "restart", "revert", "migrate")


class _Subresources:
    def __init__(self, ctx: ApiContext, cluster: ClusterView) -> None:
        self._ctx = ctx
        self._cluster = cluster
        vm_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachines")
        assert vm_type is not None
        self._vm_type: ResourceType = vm_type

    async def _load(self, namespace: str, name: str) -> tuple[JsonObject, VirtualMachineInstance | None]:
        try:
            raw = await self._ctx.store.get(VIRTUAL_MACHINES, namespace, name)
        except NotFoundError as err:
            raise st.not_found(self._vm_type, name) from err
        try:
            raw_vmi = await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError:
            return raw, None
        return raw, VirtualMachineInstance.model_validate(raw_vmi)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        action = request.match_info["action"]
        if action not in _ACTIONS:
            raise st.path_not_found()
        body = optional_json(await request.read())
        if action == "migrate":
            return await migrate(self._ctx, namespace, name, body)
        for _ in range(self._ctx.settings.max_conflict_retries):
            try:
                return await self._act(action, namespace, name, body)
            except ConflictError:
                continue
        raise st.conflict(self._vm_type, name)

    async def _act(self, action: str, namespace: str, name: str, body: Any) -> web.StreamResponse:
        raw, vmi = await self._load(namespace, name)
        vm = VirtualMachine.model_validate(raw)
        if action == "revert":
            return await self._revert(raw, vm, vmi, body)
        vmi_live = vmi is not None and not vmi.metadata.deletion_timestamp
        vmi_uid = vmi.metadata.uid if vmi is not None and vmi_live else None
        try:
            if action == "start":
                wanted = request_start(vm, vmi_exists=vmi_live)
            elif action == "stop":
                wanted = request_stop(vm, vmi_uid=vmi_uid)
            else:
                wanted = request_restart(vm, vmi_uid=vmi_uid)
        except LifecycleConflictError as err:
            raise st.ApiError(code=409, reason="Conflict", message=str(err)) from err
        if wanted.run_strategy is not None and wanted.run_strategy != vm.spec.run_strategy:
            spec = {k: v for k, v in raw["spec"].items() if k != "running"}
            spec["runStrategy"] = wanted.run_strategy.value
            raw = await self._ctx.store.update(VIRTUAL_MACHINES, {**raw, "spec": spec})
        if wanted.state_change_requests:
            status = dict(raw.get("status") or {})
            requests = [r.to_wire() for r in wanted.state_change_requests]
            status["stateChangeRequests"] = list(status.get("stateChangeRequests") or []) + requests
            await self._ctx.store.update(VIRTUAL_MACHINES, {**raw, "status": status}, subresource="status")
        return web.Response(status=202)

    async def _revert(
        self, raw: JsonObject, vm: VirtualMachine, vmi: VirtualMachineInstance | None, body: Any
    ) -> web.StreamResponse:
        if vmi is None or vmi.metadata.deletion_timestamp:
            raise st.ApiError(code=409, reason="Conflict", message="VM is not running: nothing to revert")
        config = self._cluster.configuration()
        sized = vm_effective(vm, config, self._cluster.lookup)
        if sized.effective is None:
            raise (
                st.invalid(self._vm_type, vm.metadata.name or "", sized.causes)
                if sized.causes
                else st.ApiError(code=409, reason="Conflict", message="; ".join(sized.resolution.missing))
            )
        changes = plan(running=vmi.spec, desired=sized.effective, observed=vmi.status, config=config).pending
        pending = [p.path for p in changes]
        paths = body.get("paths") if isinstance(body, dict) else None
        if paths is None:
            paths = pending
        elif not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise st.bad_request("paths: must be a list of strings")
        normalized = {p if p.startswith(TEMPLATE_SPEC_PREFIX) else TEMPLATE_SPEC_PREFIX + p for p in paths}
        unknown = sorted(normalized - set(pending))
        if unknown:
            raise st.bad_request(
                f"paths: not pending: {', '.join(unknown)}; pending: {', '.join(pending) or 'none'}"
            )
        chosen = [c for c in changes if c.path in normalized]
        sizing = {c.source for c in chosen} & {ChangeSource.INSTANCETYPE, ChangeSource.PREFERENCE}
        template_paths = sorted(c.path for c in chosen if c.source not in sizing)
        template = revert(vm.spec.template.spec, vmi.spec, template_paths, observed=vmi.status)
        spec = dict(raw["spec"])
        spec["template"] = {**spec["template"], "spec": template.to_wire()}
        spec.update(self._booted_references(vmi, sizing))
        for key in ("instancetype", "preference"):
            if spec.get(key) is None:
                spec.pop(key, None)
        reverted = VirtualMachine.model_validate({**raw, "spec": spec})
        causes = validate_vm(reverted, config) + vm_effective(reverted, config, self._cluster.lookup).causes
        if causes:
            raise st.invalid(self._vm_type, vm.metadata.name or "", causes)
        updated = await self._ctx.store.update(VIRTUAL_MACHINES, {**raw, "spec": spec})
        return json_response(updated)

    def _booted_references(self, vmi: VirtualMachineInstance, sources: set[ChangeSource]) -> dict[str, Any]:
        """``spec.instancetype``/``spec.preference`` as the running guest booted with them (its boot
        snapshot), for pending changes that came from switching them."""
        if not sources:
            return {}
        name = vmi.status.virtual_machine_revision_name if vmi.status is not None else None
        boot = (
            self._cluster.lookup(CONTROLLER_REVISIONS, vmi.metadata.namespace or "", name) if name else None
        )
        if boot is None:
            raise st.ApiError(
                code=409,
                reason="Conflict",
                message="the running guest's boot snapshot is gone: cannot revert",
            )
        booted = (boot.get("data") or {}).get("spec") or {}
        keys = {ChangeSource.INSTANCETYPE: "instancetype", ChangeSource.PREFERENCE: "preference"}
        return {keys[source]: booted.get(keys[source]) for source in sources}


def add_subresource_routes(
    app: web.Application, ctx: ApiContext, cluster: ClusterView
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Route ``PUT .../virtualmachines/{name}/{start|stop|restart|revert|migrate}`` (register before
    catch-alls)."""
    handler = _Subresources(ctx, cluster).handle
    app.router.add_route("PUT", SUBRESOURCE_PATH, handler)
    return handler
