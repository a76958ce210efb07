"""The next maintenance window's plan, as ``vmplane restarts plan`` prints it and the web console's
fleet page shows it: which window opens next, and its batches (each VM and the pending changes its
restart applies). Pure: the caller reads the objects (through the API or from the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vmplane.api.maintenance import MaintenanceWindow, RunPhase
from vmplane.api.timestamps import timestamp
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.restarts import VMState, batches, scaled_max_unavailable, selects, vm_state
from vmplane.rollout.schedule import next_occurrence, occurrence_at
from vmplane.rollout.windows import window_next_start

__all__ = ["chosen_window", "vm_states", "window_plan"]

JsonObject = Mapping[str, Any]


def vm_states(
    vms: Iterable[JsonObject], vmis: Iterable[JsonObject], namespaces: Iterable[JsonObject]
) -> list[VMState]:
    """Every VM as the restart planning sees it, from the VMs, VMIs and namespaces as listed."""

    def key(obj: JsonObject) -> tuple[str, str]:
        return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    by_key = {key(v): v for v in vmis}
    labels = {ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in namespaces}
    states = []
    for raw in vms:
        vmi = by_key.get(key(raw))
        states.append(
            vm_state(
                VirtualMachine.model_validate(raw),
                VirtualMachineInstance.model_validate(vmi) if vmi is not None else None,
                labels.get(key(raw)[0], {}),
            )
        )
    return states


def chosen_window(
    windows: Sequence[MaintenanceWindow], name: str | None, now: datetime
) -> MaintenanceWindow | None:
    """The window called ``name``, or (None) the one that opens next (ties: by name)."""
    if name is not None:
        return next((w for w in windows if w.metadata.name == name), None)
    return min(windows, key=lambda w: (window_next_start(w, now), w.metadata.name or ""), default=None)


def window_plan(window: MaintenanceWindow, states: Sequence[VMState], now: datetime) -> dict[str, Any]:
    """The next opening of ``window`` and its batches (the VMs a run in progress restarted left out)."""
    schedule = window.spec.schedule
    start = window_next_start(window, now)
    current = occurrence_at(schedule, now)
    end = (
        current.end
        if current is not None and current.start == start
        else next_occurrence(schedule, start).end
    )
    run = window.status.run if window.status is not None else None
    this_opening = run is not None and run.window_start == timestamp(start)
    done = frozenset(run.restarted) if run is not None and this_opening else frozenset()
    halted = run is not None and this_opening and run.phase is RunPhase.HALTED
    selected = sum(1 for vm in states if selects(window.spec, vm))
    return {
        "window": window.metadata.name,
        "start": timestamp(start),
        "end": timestamp(end),
        "maxUnavailable": scaled_max_unavailable(window.spec.max_unavailable, selected),
        "halted": halted,
        "batches": [
            [{"vm": vm.key, "pendingChanges": list(vm.pending)} for vm in batch]
            for batch in batches(window.spec, states, done)
        ],
    }
