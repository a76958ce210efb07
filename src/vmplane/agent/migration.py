"""The node agent's migration steps acted out: the hypervisor calls and VMI writes of each
``agent.migration_plan`` step, source and target alike. Thin: what to do was decided there."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol, assert_never

from vmplane.agent.migration_plan import (
    DISK_PORT_ROLE,
    MEMORY_PORT_ROLE,
    AbandonTarget,
    CancelSource,
    HandOver,
    Hold,
    MigrationStep,
    PrepareTarget,
    PublishLayout,
    ReportMigration,
    ReportProgress,
    RetireSource,
    StartSource,
    progress_annotation,
    published,
)
from vmplane.api.events import EventSink
from vmplane.api.migration import PROGRESS_ANNOTATION, MigrationLimits, VirtualMachineInstanceMigrationState
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.client.base import ObjectClient
from vmplane.hypervisor.base import Hypervisor, HypervisorError, MachineSpec, MachineState
from vmplane.hypervisor.migration import MigrationProgress, MigrationSettings
from vmplane.reconcile.loop import Result
from vmplane.store.base import JsonObject

__all__ = ["PROGRESS_INTERVAL", "MigrationActor", "settings_of"]

log = logging.getLogger(__name__)

#: How often the source publishes its migration's progress while it runs.
PROGRESS_INTERVAL = 1.0


class _Preparer(Protocol):
    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None: ...

    async def release(self, vmi: VirtualMachineInstance) -> None: ...


def settings_of(state: VirtualMachineInstanceMigrationState, memory_bytes: int) -> MigrationSettings:
    """The migration's limits: the cluster's configuration the controller handed over with it."""
    limits = MigrationLimits.of(state.migration_configuration)
    return MigrationSettings(
        bandwidth_bytes_per_second=limits.bandwidth_bytes_per_second,
        max_downtime_ms=limits.max_downtime_ms,
        completion_timeout=limits.completion_timeout(memory_bytes),
        progress_timeout=float(limits.progress_timeout),
    )


class MigrationActor:
    """Carries out migration steps for the node agent of ``node`` (``listen_host``: its migration
    address, where targets listen)."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        hypervisor: Hypervisor,
        events: EventSink,
        preparer: _Preparer | None,
        listen_host: str,
        now: Callable[[], str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._monotonic = monotonic
        # VMI uid -> (migration uid, when its progress was last published).
        self._last_progress: dict[str, tuple[str, float]] = {}
        self._hypervisor = hypervisor
        self._events = events
        self._preparer = preparer
        self._listen_host = listen_host
        self._now = now

    async def act(
        self, step: MigrationStep, vmi: VirtualMachineInstance, raw: JsonObject, machine: str
    ) -> Result:
        match step:
            case Hold():
                return Result()
            case PublishLayout(uid=uid):
                layout = await self._hypervisor.migration_layout(machine)
                annotations = published(vmi.metadata.annotations, uid, layout)
                await self._update(raw, annotations=annotations)
            case PrepareTarget():
                await self._prepare_target(step, vmi, raw, machine)
            case StartSource():
                await self._start_source(step, vmi, raw, machine)
            case ReportProgress(progress=progress):
                return Result(requeue_after=await self._report_progress(vmi, raw, progress))
            case CancelSource():
                with contextlib.suppress(HypervisorError):
                    await self._hypervisor.cancel_migration(machine)
            case ReportMigration(state=state, event=event):
                self._last_progress.pop(vmi.metadata.uid or "", None)
                stored = await self._write_state(raw, state)
                if event is not None:
                    reason, message, warning = event
                    kind = "Warning" if warning else "Normal"
                    await self._events.record(stored, type=kind, reason=reason, message=message)
            case HandOver(state=state):
                status = {**(raw.get("status") or {}), "migrationState": state.to_wire()}
                status["nodeName"] = state.target_node
                await self._client.update(
                    VIRTUAL_MACHINE_INSTANCES, {**raw, "status": status}, subresource="status"
                )
            case AbandonTarget() | RetireSource():
                await self._throw_away(vmi, machine)
            case _:
                assert_never(step)
        return Result()

    async def _prepare_target(
        self, step: PrepareTarget, vmi: VirtualMachineInstance, raw: JsonObject, machine: str
    ) -> None:
        try:
            if self._preparer is not None:
                await self._preparer.prepare(vmi, step.spec)
            endpoint = await self._hypervisor.prepare_incoming(
                step.spec, step.layout, listen_host=self._listen_host, copied_disks=step.copied
            )
        except (HypervisorError, OSError, ValueError) as err:
            reason = f"the target {step.state.target_node} cannot receive the VMI: {err}"
            failed = step.state.model_copy(
                update={"failed": True, "failure_reason": reason, "end_timestamp": self._now()}
            )
            stored = await self._write_state(raw, failed)
            await self._events.record(stored, type="Warning", reason="MigrationFailed", message=reason)
            return
        ports = {str(endpoint.port): MEMORY_PORT_ROLE}
        if endpoint.disk_port is not None and endpoint.disk_port != endpoint.port:
            ports[str(endpoint.disk_port)] = DISK_PORT_ROLE
        ready = step.state.model_copy(
            update={"target_node_address": endpoint.host, "target_direct_migration_node_ports": ports}
        )
        await self._write_state(raw, ready)

    async def _start_source(
        self, step: StartSource, vmi: VirtualMachineInstance, raw: JsonObject, machine: str
    ) -> None:
        stored = await self._write_state(raw, step.state)
        observed = await self._hypervisor.observe(machine)
        settings = settings_of(step.state, observed.memory_bytes)
        try:
            await self._hypervisor.migrate(machine, step.target, copied_disks=step.copied, settings=settings)
        except HypervisorError as err:
            reason = f"the migration could not start: {err}"
            failed = step.state.model_copy(
                update={"failed": True, "failure_reason": reason, "end_timestamp": self._now()}
            )
            stored = await self._write_state(stored, failed)
            await self._events.record(stored, type="Warning", reason="MigrationFailed", message=reason)
            return
        target = step.state.target_node
        message = f"The VirtualMachineInstance is migrating to node {target}."
        await self._events.record(stored, type="Normal", reason="Migrating", message=message)

    async def _report_progress(
        self, vmi: VirtualMachineInstance, raw: JsonObject, progress: MigrationProgress
    ) -> float:
        """Publish ``progress`` at most once per ``PROGRESS_INTERVAL`` per migration (each write
        wakes this loop again, which would otherwise write as fast as the store takes it, on the
        cores the migration needs); the seconds until the next may go out."""
        state = vmi.status.migration_state if vmi.status is not None else None
        uid = (state.migration_uid if state is not None else None) or ""
        now = self._monotonic()
        last_uid, last_at = self._last_progress.get(vmi.metadata.uid or "", ("", -PROGRESS_INTERVAL))
        wait = last_at + PROGRESS_INTERVAL - now if last_uid == uid else 0.0
        if wait > 0:
            return wait
        value = progress_annotation(uid, progress)
        annotations = vmi.metadata.annotations or {}
        if annotations.get(PROGRESS_ANNOTATION) != value:
            await self._update(raw, annotations={**annotations, PROGRESS_ANNOTATION: value})
            self._last_progress[vmi.metadata.uid or ""] = (uid, now)
        return PROGRESS_INTERVAL

    async def _throw_away(self, vmi: VirtualMachineInstance, machine: str) -> None:
        """Stop and forget this node's machine of a VMI that runs elsewhere, and its files here."""
        with contextlib.suppress(HypervisorError):
            observed = await self._hypervisor.observe(machine)
            if observed.state is not MachineState.STOPPED:
                await self._hypervisor.stop(machine, grace_period=0)
            await self._hypervisor.forget(machine)
        if self._preparer is not None:
            await self._preparer.release(vmi)

    async def _write_state(self, raw: JsonObject, state: VirtualMachineInstanceMigrationState) -> JsonObject:
        status = {**(raw.get("status") or {}), "migrationState": state.to_wire()}
        return await self._client.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "status": status}, subresource="status"
        )

    async def _update(self, raw: JsonObject, *, annotations: dict[str, str]) -> JsonObject:
        metadata = {**raw["metadata"], "annotations": annotations}
        return await self._client.update(VIRTUAL_MACHINE_INSTANCES, {**raw, "metadata": metadata})
