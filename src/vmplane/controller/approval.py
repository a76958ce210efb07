"""The restart-approval controller: per VM, ``Automatic`` restarts at once and ``Window`` carries a
``RestartScheduled`` condition naming the window and its next start (``rollout.approval`` decides).

It writes only that condition of the VM's status (the VM controller keeps it while changes are
pending) and restart requests (``restart_request.restart_vm``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from vmplane.api.events import EventSink
from vmplane.api.maintenance import MaintenanceWindow
from vmplane.api.meta import Condition
from vmplane.api.ownership import controller_of
from vmplane.api.resources import VIRTUAL_MACHINES
from vmplane.api.timestamps import timestamp
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.client.base import ObjectClient
from vmplane.controller.restart_request import restart_vm
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.approval import RESTART_SCHEDULED, approval_decision
from vmplane.rollout.conditions import merge_conditions
from vmplane.rollout.restarts import VMState, vm_state
from vmplane.store.base import ConflictError, NotFoundError

__all__ = ["ApprovalReconciler", "state_from", "state_of"]


def _same(a: Condition | None, b: Condition | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.status, a.reason, a.message) == (b.status, b.reason, b.message)


def state_from(
    raw_vm: dict[str, Any], raw_vmi: dict[str, Any] | None, raw_namespace: dict[str, Any] | None
) -> VMState:
    """The VM's :class:`VMState` from the VM, the VMI of its name and its namespace, as stored (a
    VMI another owner controls is not the VM's)."""
    vm = VirtualMachine.model_validate(raw_vm)
    owner = controller_of(raw_vmi.get("metadata") or {}) if raw_vmi is not None else None
    owned = raw_vmi is not None and (owner is None or owner.get("uid") == vm.metadata.uid)
    vmi = VirtualMachineInstance.model_validate(raw_vmi) if owned else None
    return vm_state(vm, vmi, ((raw_namespace or {}).get("metadata") or {}).get("labels") or {})


def state_of(raw_vm: dict[str, Any], vmis: Informer, namespaces: Informer) -> VMState:
    """The VM's :class:`VMState` from the caches."""
    metadata = raw_vm.get("metadata") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
    return state_from(raw_vm, vmis.get(namespace, name), namespaces.get("", namespace))


class ApprovalReconciler:
    """Reconciles one VM's restart approval (keyed by namespace and name)."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        vms: Informer,
        vmis: Informer,
        namespaces: Informer,
        windows: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        poll_interval: float,
    ) -> None:
        self._client = client
        self._vms = vms
        self._vmis = vmis
        self._namespaces = namespaces
        self._windows = windows
        self._events = events
        self._clock = clock
        self._poll = poll_interval

    async def reconcile(self, key: Key) -> Result:
        """Restart an ``Automatic`` VM with pending changes; keep ``RestartScheduled`` up to date."""
        raw = self._vms.get(*key)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            return Result()
        state = state_of(raw, self._vmis, self._namespaces)
        windows = [MaintenanceWindow.model_validate(w) for w in self._windows.list()]
        now = self._clock()
        decision = approval_decision(state, windows, now)
        restarted = decision.restart and await self._restart(state)
        if restarted:
            await self._events.record(
                raw,
                type="Normal",
                reason="AutomaticRestart",
                message=f"restarting to apply pending changes: {', '.join(state.pending)}",
            )
        await self._write_condition(raw, decision.scheduled, timestamp(now))
        # The condition names a next start, which moves once that start has passed.
        return Result(requeue_after=self._poll if decision.scheduled is not None else None)

    async def _restart(self, state: VMState) -> bool:
        if state.vmi_uid is None:
            return False
        return await restart_vm(
            self._client, namespace=state.namespace, name=state.name, vmi_uid=state.vmi_uid
        )

    async def _write_condition(self, raw: dict[str, Any], wanted: Condition | None, now: str) -> None:
        vm = VirtualMachine.model_validate(raw)
        status = vm.status
        current = status.condition(RESTART_SCHEDULED) if status is not None else None
        if _same(current, wanted) or status is None:
            return
        others = [c for c in status.conditions or () if c.type != RESTART_SCHEDULED]
        conditions = others + merge_conditions(
            [current] if current else [], [wanted] if wanted else [], now=now
        )
        updated = status.model_copy(update={"conditions": conditions or None})
        try:
            await self._client.update(
                VIRTUAL_MACHINES, {**raw, "status": updated.to_wire()}, subresource="status"
            )
        except (ConflictError, NotFoundError):
            return  # the VM changed meanwhile: its watch event reconciles it again
