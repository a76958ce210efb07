"""``PUT .../virtualmachines/NAME/migrate``: upstream virt-api's ``MigrateVMRequestHandler``.

The body is ``MigrateOptions`` (``addedNodeSelector``, ``dryRun``). The VM's VMI must be Running
(409 otherwise, upstream's message); the handler then creates a ``VirtualMachineInstanceMigration``
named ``kubevirt-migrate-vm-XXXXX`` through the ordinary create path, so the migration's own
admission (the VMI is migratable, no migration in flight) decides, and answers 202.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vmplane.api.decoding import FieldValidation, decode
from vmplane.api.errors import InvalidObjectError
from vmplane.api.migration import MigrateOptions, added_node_selector_causes
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.apiserver import status as st
from vmplane.apiserver.bodies import WriteOptions
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.routing import Target
from vmplane.apiserver.writes import create_object
from vmplane.store.base import NotFoundError

__all__ = ["GENERATE_NAME", "VM_NOT_RUNNING", "migrate"]

GENERATE_NAME = "kubevirt-migrate-vm-"
VM_NOT_RUNNING = "VM is not running"
_MANAGER = "vmplane-migrate"


def _options(body: Any) -> MigrateOptions:
    """The body as ``MigrateOptions`` (none: no options), refusing what upstream's decoder would."""
    if body is None:
        return MigrateOptions()
    if not isinstance(body, dict):
        raise st.bad_request("body: must be a MigrateOptions object")
    try:
        options: MigrateOptions = decode(
            MigrateOptions, body, kind="MigrateOptions", field_validation=FieldValidation.STRICT
        ).value
    except InvalidObjectError as err:
        raise st.bad_request("; ".join(f"{c.field}: {c.message}" for c in err.causes)) from err
    causes = added_node_selector_causes(options.added_node_selector, "addedNodeSelector")
    if causes:
        raise st.bad_request("; ".join(f"{c.field}: {c.message}" for c in causes))
    return options


async def migrate(ctx: ApiContext, namespace: str, name: str, body: Any) -> web.StreamResponse:
    """Create a migration of the VM's running VMI; 202 when created (or validated, on a dry run)."""
    options = _options(body)
    vm_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachines")
    vmi_type = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstances")
    migrations = ctx.registry.lookup("kubevirt.io", "v1", "virtualmachineinstancemigrations")
    assert vm_type is not None
    assert vmi_type is not None
    assert migrations is not None
    try:
        await ctx.store.get(VIRTUAL_MACHINES, namespace, name)
    except NotFoundError as err:
        raise st.not_found(vm_type, name) from err
    try:
        raw_vmi = await ctx.store.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
    except NotFoundError as err:
        raise st.not_found(vmi_type, name) from err
    vmi_status = VirtualMachineInstance.model_validate(raw_vmi).status
    if vmi_status is None or vmi_status.phase is not VMIPhase.RUNNING:
        raise st.ApiError(
            code=409,
            reason="Conflict",
            message=f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": {VM_NOT_RUNNING}',
        )
    spec: dict[str, Any] = {"vmiName": name}
    if options.added_node_selector:
        spec["addedNodeSelector"] = dict(options.added_node_selector)
    migration = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": GENERATE_NAME, "namespace": namespace},
        "spec": spec,
    }
    opts = WriteOptions(
        dry_run=bool(options.dry_run), field_validation="Strict", field_manager=_MANAGER, force=False
    )
    await create_object(ctx, Target(migrations, namespace), migration, opts, manager=_MANAGER)
    return web.Response(status=202)
