"""The VM controller's instance-type chores: store the snapshots a VM uses on first use and name them
in its status (``status.instancetypeRef``/``preferenceRef``), and say why a VM cannot be sized."""

from __future__ import annotations

import contextlib

from vmplane.api.instancetype_refs import Resolution
from vmplane.api.resources import CONTROLLER_REVISIONS
from vmplane.api.vm import VirtualMachine, VirtualMachineStatus
from vmplane.client.base import ObjectClient
from vmplane.rollout.vm_effective import VMEffective
from vmplane.store.base import AlreadyExistsError

__all__ = ["store_snapshots", "unsized_message"]


async def store_snapshots(client: ObjectClient, vm: VirtualMachine, resolution: Resolution) -> VirtualMachine:
    """Create the snapshots first used now and return ``vm`` with its status naming those in use.

    A snapshot already stored under the same name holds the same generation of the same object, so
    ``AlreadyExists`` is success. The status itself is written with the rest of the VM's status.
    """
    for revision in resolution.new_revisions:
        with contextlib.suppress(AlreadyExistsError):
            await client.create(CONTROLLER_REVISIONS, revision)
    status = vm.status or VirtualMachineStatus()
    refs = {"instancetype_ref": resolution.instancetype_ref, "preference_ref": resolution.preference_ref}
    if vm.spec.instancetype is not None and resolution.instancetype_ref is None:
        refs.pop("instancetype_ref")  # not resolvable now: keep what the status said
    if vm.spec.preference is not None and resolution.preference_ref is None:
        refs.pop("preference_ref")
    if all(getattr(status, key) == value for key, value in refs.items()):
        return vm
    return vm.model_copy(update={"status": status.model_copy(update=refs)})


def unsized_message(sized: VMEffective) -> str:
    """Why a VM whose instance type or preference does not apply cannot start (upstream's wording)."""
    reasons = [c.message for c in sized.causes] + [
        f"failed to find instance type or preference: {m}" for m in sized.resolution.missing
    ]
    return "Error creating virtual machine instance: " + "; ".join(reasons)
