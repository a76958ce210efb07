"""A maintenance window's run, one step at a time: open, gate the batch in flight, start the next
batch, complete, halt on a failed gate, close with the window. Pure.

Everything a run needs to resume is in the ``WindowRun`` it returns (stored in the window's
``status.run``), never in memory: a control plane restarted mid-window picks up the batch in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vmplane.api.maintenance import (
    Batch,
    BatchMember,
    MaintenanceWindow,
    MaintenanceWindowSpec,
    RunFailure,
    RunPhase,
    WindowRun,
)
from vmplane.api.meta import Condition
from vmplane.api.timestamps import parse_timestamp, timestamp
from vmplane.rollout.restarts import Gate, VMState, gate, scaled_max_unavailable, selects, waiting
from vmplane.rollout.schedule import Occurrence, next_occurrence, occurrence_at

__all__ = ["HALTED", "WindowEvent", "WindowStep", "step_window", "window_next_start"]

HALTED = "Halted"


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """An event about the window: Kubernetes' type, reason and message."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class WindowStep:
    """What a window does now: its new run, the VMs to restart, events, and when to look again."""

    run: WindowRun | None
    next_start: datetime
    restart: tuple[VMState, ...] = ()
    events: tuple[WindowEvent, ...] = ()
    wake_at: datetime | None = None

    def conditions(self) -> list[Condition]:
        """``Halted``: True with the failed VM and why while the current run is halted."""
        run = self.run
        if run is not None and run.phase is RunPhase.HALTED and run.failures:
            failure = run.failures[-1]
            return [
                Condition(
                    type=HALTED,
                    status="True",
                    reason=failure.reason,
                    message=f"{failure.namespace}/{failure.name}: {failure.message}",
                )
            ]
        return [Condition(type=HALTED, status="False", reason="NotHalted", message="")]


def _gate_batch(
    run: WindowRun, spec: MaintenanceWindowSpec, by_key: Mapping[str, VMState], now: datetime
) -> tuple[WindowRun, list[WindowEvent], datetime | None]:
    """The run after checking the current batch's gate, its events, and the gate's deadline while waiting."""
    current = run.current
    assert current is not None
    started, timeout = parse_timestamp(current.started), spec.health_gate.timeout_seconds
    verdicts = [
        (m, gate(m, by_key.get(f"{m.namespace}/{m.name}"), started=started, now=now, timeout=timeout))
        for m in current.vms
    ]
    failed = [m for m, verdict in verdicts if verdict is Gate.FAILED]
    if failed:
        failures = [
            RunFailure(
                namespace=m.namespace,
                name=m.name,
                reason="HealthGateFailed",
                message=f"not Ready within {timeout}s of its restart in batch {current.index}",
            )
            for m in failed
        ]
        events = [
            WindowEvent("Warning", "HealthGateFailed", f"{f.namespace}/{f.name}: {f.message}; window halted")
            for f in failures
        ]
        halted = run.model_copy(
            update={
                "phase": RunPhase.HALTED,
                "failures": [*run.failures, *failures],
                "finished": timestamp(now),
            }
        )
        return halted, events, None
    if any(verdict is Gate.WAITING for _, verdict in verdicts):
        return run, [], started + timedelta(seconds=timeout)
    names = [f"{m.namespace}/{m.name}" for m in current.vms]
    passed = run.model_copy(
        update={"batches_done": run.batches_done + 1, "restarted": [*run.restarted, *names], "current": None}
    )
    return (
        passed,
        [WindowEvent("Normal", "BatchCompleted", f"batch {current.index}: {', '.join(names)} Ready")],
        None,
    )


def _advance(
    run: WindowRun, spec: MaintenanceWindowSpec, vms: Sequence[VMState], now: datetime, occurrence: Occurrence
) -> WindowStep:
    events: list[WindowEvent] = []
    next_start = next_occurrence(spec.schedule, occurrence.end).start
    if run.current is not None:
        by_key = {vm.key: vm for vm in vms}
        run, gate_events, deadline = _gate_batch(run, spec, by_key, now)
        events += gate_events
        if run.phase is RunPhase.HALTED:
            return WindowStep(run, next_start, events=tuple(events), wake_at=occurrence.end)
        if run.current is not None:
            # A member still on the VMI it had when the batch started was not restarted yet (the
            # plane stopped between storing the batch and asking): ask again.
            again = tuple(
                vm
                for m in run.current.vms
                if (vm := by_key.get(f"{m.namespace}/{m.name}")) is not None
                and vm.vmi_uid == m.vmi_uid
                and vm.blocked is None
            )
            return WindowStep(run, next_start, restart=again, events=tuple(events), wake_at=deadline)
    todo = waiting(spec, vms, set(run.restarted))
    if not todo:
        completed = run.model_copy(update={"phase": RunPhase.COMPLETED, "finished": timestamp(now)})
        done = WindowEvent(
            "Normal", "WindowCompleted", f"{run.batches_done} batches, {len(run.restarted)} VMs restarted"
        )
        return WindowStep(completed, next_start, events=(*events, done), wake_at=occurrence.end)
    selected = [vm for vm in vms if selects(spec, vm)]
    budget = scaled_max_unavailable(spec.max_unavailable, len(selected)) - sum(
        1 for vm in selected if not vm.available
    )
    batch = [vm for vm in todo if vm.blocked is None][: max(budget, 0)]
    if not batch:
        return WindowStep(run, next_start, events=tuple(events), wake_at=occurrence.end)
    index = run.batches_done + 1
    members = [BatchMember(namespace=vm.namespace, name=vm.name, vmi_uid=vm.vmi_uid) for vm in batch]
    started = run.model_copy(update={"current": Batch(index=index, started=timestamp(now), vms=members)})
    message = f"batch {index}: restarting {', '.join(vm.key for vm in batch)}"
    return WindowStep(
        started,
        next_start,
        restart=tuple(batch),
        events=(*events, WindowEvent("Normal", "BatchStarted", message)),
        wake_at=now + timedelta(seconds=spec.health_gate.timeout_seconds),
    )


def step_window(window: MaintenanceWindow, vms: Sequence[VMState], now: datetime) -> WindowStep:
    """What ``window`` does at ``now`` given every VM: open a run, gate the batch in flight, start
    the next batch, complete, halt, or close with the window."""
    spec = window.spec
    run = window.status.run if window.status is not None else None
    occurrence = occurrence_at(spec.schedule, now)
    if occurrence is None:
        upcoming = next_occurrence(spec.schedule, now)
        if run is not None and run.phase is RunPhase.RUNNING:
            left = bool(waiting(spec, vms, set(run.restarted)))
            closed = run.model_copy(
                update={
                    "phase": RunPhase.CLOSED if left else RunPhase.COMPLETED,
                    "finished": timestamp(now),
                }
            )
            event = WindowEvent("Normal", "WindowClosed", f"closed with {len(run.restarted)} VMs restarted")
            return WindowStep(closed, upcoming.start, events=(event,), wake_at=upcoming.start)
        return WindowStep(run, upcoming.start, wake_at=upcoming.start)
    events: list[WindowEvent] = []
    if run is None or run.window_start != timestamp(occurrence.start):
        run = WindowRun(
            window_start=timestamp(occurrence.start),
            window_end=timestamp(occurrence.end),
            started=timestamp(now),
        )
        events.append(WindowEvent("Normal", "WindowOpened", f"open until {run.window_end}"))
    if run.phase is not RunPhase.RUNNING:
        next_start = next_occurrence(spec.schedule, occurrence.end).start
        return WindowStep(run, next_start, events=tuple(events), wake_at=occurrence.end)
    step = _advance(run, spec, vms, now, occurrence)
    return WindowStep(step.run, step.next_start, step.restart, (*events, *step.events), step.wake_at)


def window_next_start(window: MaintenanceWindow, now: datetime) -> datetime:
    """When the window next restarts VMs: the open occurrence's start while its run goes on, else the
    next occurrence's."""
    schedule = window.spec.schedule
    occurrence = occurrence_at(schedule, now)
    if occurrence is None:
        return next_occurrence(schedule, now).start
    run = window.status.run if window.status is not None else None
    finished = (
        run is not None
        and run.window_start == timestamp(occurrence.start)
        and run.phase is not RunPhase.RUNNING
    )
    return next_occurrence(schedule, occurrence.end).start if finished else occurrence.start
