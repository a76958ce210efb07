"""``PUT subresources.kubevirt.io/v1 .../{virtualmachines|virtualmachineinstances}/{name}/addvolume``
and ``.../removevolume``.

Upstream's volume hotplug (``virtctl addvolume``): the body is ``AddVolumeOptions`` or
``RemoveVolumeOptions`` (``api.volume_requests`` decodes and applies them, with virt-api's messages),
the answer 202.

* On a VMI no VM controls, the VMI's spec gets the volume and its disk (or loses them); its node
  agent hot-plugs it and reports it in ``status.volumeStatus``. A VM's VMI is refused, as upstream
  does: its spec is the VM's rollout to write, and the VM's own subresource is the way.
* On a VM, the template gets it, and so does the running VMI, if any, at once: the volume is
  hot-plugged whatever the rollout strategy (upstream's ``volumeRequests``, applied to both in one
  step), so nothing is left pending. The VM is written first: the VM controller, seeing the template
  ahead of the VMI, would at worst plug it itself, never unplug it.

``dryRun: ["All"]`` checks everything and stores nothing. Both writes pass the kinds' admission
checks (for the VMI: the structural ones; a user's own edit of a VMI spec stays refused).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vmplane.api.errors import InvalidObjectError
from vmplane.api.ownership import controller_of
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.spec_rules import spec_field_causes
from vmplane.api.validation import validate_vmi_spec, volume_path_causes
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceSpec, VMIPhase
from vmplane.api.volume_requests import (
    VolumeRequestError,
    add_volume,
    decode_add,
    decode_remove,
    has_volume,
    remove_volume,
)
from vmplane.apiserver import status as st
from vmplane.apiserver.bodies import optional_json
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.registry import ResourceType
from vmplane.store.base import ConflictError, JsonObject, NotFoundError

__all__ = ["VOLUME_ACTIONS", "add_volume_routes"]

_ROOT = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}"
VOLUME_ACTIONS = ("addvolume", "removevolume")
VMI_NOT_RUNNING = "VMI is not running"


@dataclass(frozen=True, slots=True)
class _Request:
    """One decoded request: the volume it names, what it does to a VMI spec, and whether a spec has
    that done already."""

    name: str
    dry_run: bool
    apply: Callable[[VirtualMachineInstanceSpec], VirtualMachineInstanceSpec]
    done: Callable[[VirtualMachineInstanceSpec], bool]


def _decoded(action: str, body: Any) -> _Request:
    if action == "addvolume":
        opts, dry_run = decode_add(body)
        return _Request(
            opts.name,
            dry_run,
            lambda spec: add_volume(spec, opts),
            lambda spec: has_volume(spec, opts.name),
        )
    removal, dry_run = decode_remove(body)
    return _Request(
        removal.name,
        dry_run,
        lambda spec: remove_volume(spec, removal.name),
        lambda spec: not has_volume(spec, removal.name),
    )


def _conflict(err: VolumeRequestError) -> st.ApiError:
    reason = "Conflict" if err.code == 409 else "BadRequest"
    return st.ApiError(code=err.code, reason=reason, message=err.message)


class _VolumeRequests:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        vm_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachines")
        vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        assert vm_type is not None
        assert vmi_type is not None
        self._vm_type: ResourceType = vm_type
        self._vmi_type: ResourceType = vmi_type

    async def _decode(self, request: web.Request) -> _Request:
        try:
            return _decoded(request.match_info["action"], optional_json(await request.read()))
        except VolumeRequestError as err:
            raise _conflict(err) from err

    async def vmi(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        wanted = await self._decode(request)
        for _ in range(self._ctx.settings.max_conflict_retries):
            try:
                raw = await self._get(VIRTUAL_MACHINE_INSTANCES, self._vmi_type, namespace, name)
                if controller_of(raw.get("metadata") or {}) is not None:
                    raise st.bad_request(f"VMI {namespace}/{name} is owned by a VM")
                await self._update_vmi(raw, wanted, skip_done=False)
            except ConflictError:
                continue
            return web.Response(status=202)
        raise st.conflict(self._vmi_type, name)

    async def vm(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        wanted = await self._decode(request)
        for _ in range(self._ctx.settings.max_conflict_retries):
            try:
                await self._update_vm(namespace, name, wanted)
                break
            except ConflictError:
                continue
        else:
            raise st.conflict(self._vm_type, name)
        for _ in range(self._ctx.settings.max_conflict_retries):
            try:
                raw_vmi = await self._ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
            except NotFoundError:
                return web.Response(status=202)
            try:
                await self._update_vmi(raw_vmi, wanted, skip_done=True)
            except ConflictError:
                continue
            return web.Response(status=202)
        raise st.conflict(self._vmi_type, name)

    async def _get(self, resource: Any, kind: ResourceType, namespace: str, name: str) -> JsonObject:
        try:
            return await self._ctx.store.get(resource, namespace, name)
        except NotFoundError as err:
            raise st.not_found(kind, name) from err

    async def _update_vm(self, namespace: str, name: str, wanted: _Request) -> None:
        raw = await self._get(VIRTUAL_MACHINES, self._vm_type, namespace, name)
        vm = VirtualMachine.model_validate(raw)
        try:
            template = wanted.apply(vm.spec.template.spec)
        except VolumeRequestError as err:
            raise _conflict(err) from err
        spec = dict(raw["spec"])
        spec["template"] = {**spec["template"], "spec": template.to_wire()}
        new = {**raw, "spec": spec}
        try:
            admitted = self._vm_type.admitter.admit(
                operation="UPDATE", new=new, old=raw, field_validation="Strict", dry_run=wanted.dry_run
            )
        except InvalidObjectError as err:
            raise st.invalid(self._vm_type, name, err.causes) from err
        if not wanted.dry_run:
            # The status stays the stored one: this writes the spec only.
            updated = {k: v for k, v in admitted.object.items() if k != "status"}
            if "status" in raw:
                updated["status"] = raw["status"]
            await self._ctx.store.update(VIRTUAL_MACHINES, updated)

    async def _update_vmi(self, raw: JsonObject, wanted: _Request, *, skip_done: bool) -> None:
        """Apply ``wanted`` to a running VMI; ``skip_done``: a VMI that has it already (the VM controller
        was faster) or that is not running (the next start takes it from the template) is left alone."""
        vmi = VirtualMachineInstance.model_validate(raw)
        running = vmi.status is not None and vmi.status.phase is VMIPhase.RUNNING
        if not running or vmi.metadata.deletion_timestamp:
            if skip_done:
                return
            raise st.ApiError(code=409, reason="Conflict", message=VMI_NOT_RUNNING)
        if skip_done and wanted.done(vmi.spec):
            return
        try:
            spec = wanted.apply(vmi.spec)
        except VolumeRequestError as err:
            raise _conflict(err) from err
        self._check_vmi_spec(vmi.metadata.name or "", spec)
        if not wanted.dry_run:
            await self._ctx.store.update(VIRTUAL_MACHINE_INSTANCES, {**raw, "spec": spec.to_wire()})

    def _check_vmi_spec(self, name: str, spec: VirtualMachineInstanceSpec) -> None:
        causes = (
            validate_vmi_spec(spec, prefix="spec")
            + volume_path_causes(spec, prefix="spec")
            + spec_field_causes(spec, prefix="spec")
        )
        if causes:
            raise st.invalid(self._vmi_type, name, causes)


def add_volume_routes(app: web.Application, ctx: ApiContext) -> None:
    """Route ``addvolume``/``removevolume`` of VMs and VMIs (before the ``{action}`` routes of the
    other subresources, which answer 404 for actions they do not know)."""
    handlers = _VolumeRequests(ctx)
    for action in VOLUME_ACTIONS:
        app.router.add_route("PUT", f"{_ROOT}/virtualmachines/{{name}}/{{action:{action}}}", handlers.vm)
        app.router.add_route(
            "PUT", f"{_ROOT}/virtualmachineinstances/{{name}}/{{action:{action}}}", handlers.vmi
        )
