"""A VM's status, derived in one pure function from the VM, its VMI, the rollout plan and whether the
VMI's node still admits its placement.

The controller writes it after every reconcile; the API computes it for a dry run, to show what a
change would do before it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmplane.api.guest_ops import is_paused
from vmplane.api.lifecycle import effective_run_strategy
from vmplane.api.meta import Condition
from vmplane.api.vm import PrintableStatus, VirtualMachine, VirtualMachineStatus
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.rollout.approval import RESTART_SCHEDULED
from vmplane.rollout.conditions import merge_conditions
from vmplane.rollout.placement import PLACEMENT_VIOLATED, PlacementViolation
from vmplane.rollout.plan import Plan

__all__ = ["NOT_MIRRORED", "READY", "RESTART_REQUIRED", "Observation", "derive_status"]

READY = "Ready"
RESTART_REQUIRED = "RestartRequired"
FAILURE = "Failure"
# Upstream mirrors every VMI condition onto the VM except these, which the VM owns.
NOT_MIRRORED = frozenset({READY, FAILURE, RESTART_REQUIRED, RESTART_SCHEDULED, PLACEMENT_VIOLATED})
UNSCHEDULABLE = "Unschedulable"


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the status depends on besides the VM itself."""

    vmi: VirtualMachineInstance | None
    plan: Plan | None
    crash_loop: bool
    now: str
    #: Whether the VMI's node no longer admits its placement (``rollout.placement``).
    placement: PlacementViolation | None = None


def _printable(vm: VirtualMachine, obs: Observation) -> PrintableStatus:
    vmi = obs.vmi
    if vm.metadata.deletion_timestamp:
        return PrintableStatus.TERMINATING
    if vmi is None:
        return PrintableStatus.CRASH_LOOP_BACK_OFF if obs.crash_loop else PrintableStatus.STOPPED
    if vmi.metadata.deletion_timestamp:
        return PrintableStatus.STOPPING
    status = vmi.status
    phase = status.phase if status is not None else None
    if phase is VMIPhase.RUNNING:
        return PrintableStatus.PAUSED if is_paused(vmi) else PrintableStatus.RUNNING
    if phase in (VMIPhase.SUCCEEDED, VMIPhase.FAILED):
        return PrintableStatus.CRASH_LOOP_BACK_OFF if obs.crash_loop else PrintableStatus.STOPPED
    scheduled = status.condition("PodScheduled") if status is not None else None
    if scheduled is not None and scheduled.status == "False" and scheduled.reason == UNSCHEDULABLE:
        return PrintableStatus.ERROR_UNSCHEDULABLE
    return PrintableStatus.STARTING


def _ready(obs: Observation) -> Condition:
    vmi = obs.vmi
    if vmi is None:
        return Condition(type=READY, status="False", reason="VMINotExists", message="VMI does not exist")
    ready = vmi.status.condition(READY) if vmi.status is not None else None
    if ready is None:
        return Condition(
            type=READY, status="False", reason="NotReady", message="the guest is not running yet"
        )
    return ready


def derive_status(vm: VirtualMachine, obs: Observation) -> VirtualMachineStatus:
    """The VM's status: conditions, pending changes, printable status and generations."""
    previous = vm.status or VirtualMachineStatus()
    conditions = [_ready(obs)]
    if obs.plan is not None and obs.plan.restart_required is not None:
        required = obs.plan.restart_required
        conditions.append(
            Condition(type=RESTART_REQUIRED, status="True", reason=required.reason, message=required.message)
        )
    if obs.placement is not None:
        conditions.append(obs.placement.condition())
    if obs.vmi is not None and obs.vmi.status is not None:
        conditions += [c for c in obs.vmi.status.conditions or () if c.type not in NOT_MIRRORED]
    if obs.plan is not None and obs.plan.pending:
        # The restart-approval controller owns RestartScheduled; it means nothing once nothing waits.
        conditions += [c for c in previous.conditions or () if c.type == RESTART_SCHEDULED]
    generation = vm.metadata.generation
    # Each condition says which generation it was computed for, so ``kubectl wait --for=condition``
    # trusts it even while status.observedGeneration lags (it does while changes are pending).
    conditions = [c.model_copy(update={"observed_generation": generation}) for c in conditions]
    # A placement violation leaves the generation observed: its change is in the VMI already, and
    # only the node is wrong.
    converged = obs.vmi is not None and obs.plan is not None and obs.plan.empty
    observed_generation = generation if converged else previous.observed_generation
    pending = [
        *(obs.plan.pending if obs.plan is not None else ()),
        *(obs.placement.pending if obs.placement is not None else ()),
    ]
    merged = merge_conditions(previous.conditions or (), conditions, now=obs.now)
    return previous.model_copy(
        update={
            "created": obs.vmi is not None,
            "ready": merged[0].status == "True",
            "printable_status": _printable(vm, obs),
            "run_strategy": effective_run_strategy(vm),
            "conditions": merged,
            "pending_changes": pending or None,
            "observed_generation": observed_generation,
            "desired_generation": generation,
        }
    )
