"""The maintenance-window controller: runs each ``MaintenanceWindow`` (``rollout.windows`` decides).

Each reconcile reads the window and every VM from the caches, asks ``step_window`` what to do now,
writes the window's status first (the run, the batch in flight with each VM's VMI) and then asks for
the batch's restarts (``restart_request.restart_vm``), so a control plane stopped between the two
resumes from the status and asks again; a restart is never asked twice for one VMI.

Time drives windows, so a reconcile is due when the step says (the next start, a gate's deadline,
the window's end) or after ``poll_interval`` seconds, whichever is sooner: the clock may be a test's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.maintenance import MaintenanceWindow, MaintenanceWindowStatus
from vmplane.api.resources import MAINTENANCE_WINDOWS
from vmplane.api.timestamps import timestamp
from vmplane.client.base import ObjectClient
from vmplane.controller.approval import state_of
from vmplane.controller.restart_request import restart_vm
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.rollout.conditions import merge_conditions
from vmplane.rollout.windows import step_window
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
        states = [state_of(vm, self._vmis, self._namespaces) for vm in self._vms.list()]
        now = self._clock()
        step = step_window(window, states, now)
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

    def window_keys(self) -> list[Key]:
        """Every window's key (a VM change may let any window move on)."""
        return [("", w["metadata"]["name"]) for w in self._windows.list()]
