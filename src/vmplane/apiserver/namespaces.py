"""The Namespace kind as kube-apiserver's namespace registry serves it.

* Create: ``status.phase`` is ``Active`` and ``spec.finalizers`` holds ``kubernetes`` (added if the
  client left it out), so a delete only marks the namespace (``deletionTimestamp``, phase
  ``Terminating``: ``store/semantics.py``) until the namespace controller has emptied it.
* Update: ``spec.finalizers`` keeps its stored value: it changes only through ``finalize``.
* Status: the phase must agree with the deletion (Kubernetes' ``ValidateNamespaceStatusUpdate``).
* ``PUT namespaces/{name}/finalize`` replaces ``spec.finalizers`` and nothing else; a terminating
  namespace whose finalizers are all gone is removed by that write.
"""

from __future__ import annotations

import re

from aiohttp import web

from vmplane.api.deletion import NAMESPACE_FINALIZER
from vmplane.api.errors import FieldCause, InvalidObjectError
from vmplane.apiserver import status as st
from vmplane.apiserver.bodies import check_object, decode_body, parse_write_options
from vmplane.apiserver.context import ApiContext, json_response
from vmplane.apiserver.registry import Admitted, FieldValidation, Operation
from vmplane.apiserver.routing import Target
from vmplane.store.base import JsonObject, NotFoundError, StoreError

__all__ = ["NamespaceAdmitter", "finalize", "finalizer_causes"]

ACTIVE = "Active"
TERMINATING = "Terminating"
_QUALIFIED = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _spec(obj: JsonObject | None) -> JsonObject:
    spec = (obj or {}).get("spec")
    return dict(spec) if isinstance(spec, dict) else {}


def finalizer_causes(finalizers: object) -> list[FieldCause]:
    """What is wrong with a ``spec.finalizers`` value (a list of qualified names)."""
    if finalizers is None:
        return []
    if not isinstance(finalizers, list):
        return [FieldCause("spec.finalizers", "Invalid value: must be a list of strings")]
    causes = []
    for index, name in enumerate(finalizers):
        if not isinstance(name, str) or not _QUALIFIED.match(name) or len(name.rpartition("/")[2]) > 63:
            causes.append(
                FieldCause(
                    f"spec.finalizers[{index}]",
                    f"Invalid value: {name!r}: name part must consist of alphanumeric characters, '-', "
                    "'_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return causes


class NamespaceAdmitter:
    """Defaults and guards a Namespace's finalizers and phase (see the module docstring)."""

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidation,
        dry_run: bool,
    ) -> Admitted:
        name = str((new.get("metadata") or {}).get("name", ""))
        spec = _spec(new)
        if operation == "CREATE":
            causes = finalizer_causes(spec.get("finalizers"))
            if causes:
                raise InvalidObjectError("Namespace", name, causes)
            finalizers = list(spec.get("finalizers") or [])
            if NAMESPACE_FINALIZER not in finalizers:
                finalizers.append(NAMESPACE_FINALIZER)
            return Admitted(
                object={**new, "spec": {**spec, "finalizers": finalizers}, "status": {"phase": ACTIVE}}
            )
        old_spec = _spec(old)
        if "finalizers" in old_spec:
            spec["finalizers"] = old_spec["finalizers"]
        else:
            spec.pop("finalizers", None)
        admitted = {**new, "spec": spec}
        if not spec and "spec" not in (old or {}):
            admitted.pop("spec")
        phase = (new.get("status") or {}).get("phase") if isinstance(new.get("status"), dict) else None
        deleting = bool((new.get("metadata") or {}).get("deletionTimestamp"))
        if phase is not None:
            if deleting and phase != TERMINATING:
                message = "A namespace may only be in terminating status if it has a deletion timestamp."
                raise InvalidObjectError("Namespace", name, [FieldCause("status.Phase", message)])
            if not deleting and phase != ACTIVE:
                message = "A namespace may only be in active status if it does not have a deletion timestamp."
                raise InvalidObjectError("Namespace", name, [FieldCause("status.Phase", message)])
        return Admitted(object=admitted)


async def finalize(ctx: ApiContext, target: Target, request: web.Request, body: bytes) -> web.Response:
    """``PUT /api/v1/namespaces/{name}/finalize``: store the body's ``spec.finalizers`` only."""
    assert target.name is not None
    resource_type = target.resource_type
    opts = parse_write_options(request.query, request.query.getall("dryRun", []))
    decoded, _ = decode_body(body, request.content_type, opts.field_validation)
    obj = check_object(decoded, target)
    finalizers = _spec(obj).get("finalizers")
    causes = finalizer_causes(finalizers)
    if causes:
        raise st.invalid(resource_type, target.name, causes)
    try:
        current = await ctx.store.get(resource_type.store_resource, "", target.name)
    except NotFoundError as err:
        raise st.not_found(resource_type, target.name) from err
    rv = obj["metadata"].get("resourceVersion") or current["metadata"].get("resourceVersion")
    spec = _spec(current)
    spec["finalizers"] = list(finalizers or [])
    candidate = {**current, "spec": spec, "metadata": {**current["metadata"], "resourceVersion": rv}}
    if opts.dry_run:
        return json_response(candidate)
    try:
        stored = await ctx.store.update(resource_type.store_resource, candidate)
    except StoreError as err:
        raise st.from_exception(err, resource_type, target.name) from err
    return json_response(stored)
