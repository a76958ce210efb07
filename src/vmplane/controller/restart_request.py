"""Asking for a VM restart from a controller: the same request the ``restart`` subresource records.

``api.lifecycle.request_restart`` says what a restart means (a ``Stop`` for this VMI, then a
``Start``); the VM controller carries it out. Here the VM and VMI are read afresh from the store, so
a restart is never asked twice for one VMI: not while a request is still queued, not once that VMI is
being deleted or replaced.
"""

from __future__ import annotations

import logging

from vmplane.api.lifecycle import LifecycleConflictError, request_restart
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vm import VirtualMachine
from vmplane.client.base import ObjectClient
from vmplane.store.base import ConflictError, NotFoundError

__all__ = ["restart_vm"]

log = logging.getLogger(__name__)


async def restart_vm(client: ObjectClient, *, namespace: str, name: str, vmi_uid: str) -> bool:
    """Queue a restart of the VMI ``vmi_uid`` of VM ``namespace/name``; False when it was not queued
    (already asked, that VMI gone or going, the run strategy refuses, or a concurrent write: the
    caller's next reconcile looks again)."""
    try:
        raw = await client.get(VIRTUAL_MACHINES, namespace, name)
        vmi = await client.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
    except NotFoundError:
        return False
    if vmi["metadata"].get("uid") != vmi_uid or vmi["metadata"].get("deletionTimestamp"):
        return False
    vm = VirtualMachine.model_validate(raw)
    if vm.status is not None and vm.status.state_change_requests:
        return False
    try:
        wanted = request_restart(vm, vmi_uid=vmi_uid)
    except LifecycleConflictError as err:
        log.info("%s/%s: not restarted: %s", namespace, name, err)
        return False
    status = dict(raw.get("status") or {})
    status["stateChangeRequests"] = [r.to_wire() for r in wanted.state_change_requests]
    try:
        await client.update(VIRTUAL_MACHINES, {**raw, "status": status}, subresource="status")
    except (ConflictError, NotFoundError):
        return False
    return True
