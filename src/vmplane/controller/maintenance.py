"""The maintenance-window controller: runs each ``MaintenanceWindow`` (``rollout.windows`` decides).

Each reconcile reads the window and every VM from the caches and asks ``step_window`` what to do
now; each VM that step would restart is read afresh from the store and the step asked again, so a
cache lagging a revert never restarts a VM. It writes the window's status first (the run, the batch
in flight with each VM's VMI) and then asks for the batch's restarts (``restart_request.restart_vm``),
so a control plane stopped between the two resumes from the status and asks again; a restart is
never asked twice for one VMI.

Time drives windows, so a reconcile is due when the step says (the next start, a gate's deadline,
the window's end) or after ``poll_interval`` seconds, whichever is sooner: the clock may be a test's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vmplane.api.events import EventSink
from vmplane.api.maintenance import MaintenanceWindow, MaintenanceWindowStatus
from vmplane.api.resources import MAINTENANCE_WINDOWS, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.timestamps import timestamp
from vmplane.client.base import ObjectClient
from vmplane.controller.approval import state_from, state_of
from vmplane.controller.restart_request import restart_vm
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.conditions import merge_conditions
from vmplane.rollout.restarts import VMState
from vmplane.rollout.windows import WindowStep, step_window
from vmplane.store.base import NotFoundError

__all__ = ["MaintenanceReconciler"]

log = logging.getLogger(__name__)


class MaintenanceReconciler:
    """Reconciles one MaintenanceWindow (cluster-scoped: keyed by ``("", name)``)."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        windows: Informer,
        vms: Informer,
        vmis: Informer,
        namespaces: Informer,
        events: EventSink,
        clock: Callable[[], datetime],
        poll_interval: float,
    ) -> None:
        self._client = client
        self._windows = windows
        self._vms = vms
        self._vmis = vmis
        self._namespaces = namespaces
        self._events = events
        self._clock = clock
        self._poll = poll_interval

    async def reconcile(self, key: Key) -> Result:
        """Step the window's run; write its status, then its batch's restarts and events."""
        raw = self._windows.get(*key)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            return Result()
        window = MaintenanceWindow.model_validate(raw)
        now = self._clock()
        step = await self._step(window, now)
        previous = window.status or MaintenanceWindowStatus()
        status = previous.model_copy(
            update={
                "next_start": timestamp(step.next_start),
                "run": step.run,
                "conditions": merge_conditions(
                    previous.conditions or (), step.conditions(), now=timestamp(now)
                ),
            }
        )
        if status != window.status:
            try:
                raw = await self._client.update(
                    MAINTENANCE_WINDOWS, {**raw, "status": status.to_wire()}, subresource="status"
                )
            except NotFoundError:
                return Result()
            # A ConflictError propagates: the loop retries with a fresh read, before any restart.
        for event in step.events:
            await self._events.record(raw, type=event.type, reason=event.reason, message=event.message)
        for vm in step.restart:
            assert vm.vmi_uid is not None, "a batch holds only running VMs"
            if await restart_vm(self._client, namespace=vm.namespace, name=vm.name, vmi_uid=vm.vmi_uid):
                log.info("window %s: restarting %s", key[1], vm.key)
        wait = self._poll if step.wake_at is None else (step.wake_at - now).total_seconds()
        return Result(requeue_after=min(max(wait, 0.0), self._poll))

    async def _step(self, window: MaintenanceWindow, now: datetime) -> WindowStep:
        """The window's step, with each VM it would restart read afresh from the store first: the
        caches may lag a revert by a moment, and a batch is stored before its restarts are asked."""
        states = {s.key: s for s in (state_of(vm, self._vmis, self._namespaces) for vm in self._vms.list())}
        fresh: set[str] = set()
        while True:
            step = step_window(window, list(states.values()), now)
            stale = [vm for vm in step.restart if vm.key not in fresh]
            if not stale:
                return step
            for vm in stale:
                fresh.add(vm.key)
                state = await self._read_state(vm.namespace, vm.name)
                if state is None:
                    del states[vm.key]
                else:
                    states[vm.key] = state

    async def _read_state(self, namespace: str, name: str) -> VMState | None:
        try:
            raw_vm = await self._client.get(VIRTUAL_MACHINES, namespace, name)
        except NotFoundError:
            return None
        try:
            raw_vmi: dict[str, Any] | None = await self._client.get(
                VIRTUAL_MACHINE_INSTANCES, namespace, name
            )
        except NotFoundError:
            raw_vmi = None
        return state_from(raw_vm, raw_vmi, self._namespaces.get("", namespace))

    def window_keys(self) -> list[Key]:
        """Every window's key (a VM change may let any window move on)."""
        return [("", w["metadata"]["name"]) for w in self._windows.list()]
