"""What the VM controller does about a VM's VMI, decided without I/O: ``decide(...) -> RunDecision``.

The rules (docs/run-strategies.md), checked in this order:

1. A VM being deleted takes its VMI with it, unless it is deleted with ``propagationPolicy: Orphan``
   (the ``orphan`` finalizer): then its VMI is orphaned (it keeps running, without the VM's owner
   reference) and the finalizer released. A VMI being deleted is waited for. ``vmi`` is only ever
   a VMI this VM controls (``api.ownership.claim``): the controller never decides about others.
2. The first ``status.stateChangeRequests`` entry wins over the run strategy: ``Stop`` (for this
   VMI's uid, or without a uid) deletes the VMI and is dropped once the VMI is gone; ``Start``
   creates a VMI when there is none, first deletes a finished one, and is dropped once it is
   acted on or when a VMI is running.
3. ``Halted``: no VMI; the start-failure record is cleared.
4. A finished VMI (Succeeded or Failed) is replaced when the strategy restarts after that phase
   (``Always`` after either, ``RerunOnFailure`` after Failed; never ``Manual`` or ``Once``).
   Each newly failed VMI adds one to the start-failure record, and the next start waits
   ``crash_backoff * 2**(count-1)`` seconds, at most ``max_backoff`` (CrashLoopBackOff).
5. No VMI: ``Always``, ``RerunOnFailure`` and ``Once`` (if it never created one) start one, once the
   backoff has passed; ``Manual`` waits for a start request.
6. A Running VMI clears the start-failure record.

Deliberate differences from KubeVirt's ``syncRunStrategy``/``syncStartFailureStatus``: the backoff
doubles and has no jitter (upstream: ``10 * count**2`` plus up to half again at random, capped at
300 s), so tests and users can predict it; and every Failed VMI counts, not only one that failed
before reaching Running, so a guest that crashes minutes after boot is also backed off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from vmplane.api.lifecycle import effective_run_strategy, wants_restart_after
from vmplane.api.ownership import ORPHAN_FINALIZER
from vmplane.api.timestamps import parse_timestamp, timestamp
from vmplane.api.vm import RunStrategy, VirtualMachine, VirtualMachineStatus
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase

__all__ = ["RunAction", "RunConfig", "RunDecision", "StartFailure", "decide"]

FINAL_PHASES = (VMIPhase.SUCCEEDED, VMIPhase.FAILED)
_STARTS_WITHOUT_VMI = (RunStrategy.ALWAYS, RunStrategy.RERUN_ON_FAILURE, RunStrategy.ONCE)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Crash-loop backoff: the first restart after a failure waits ``crash_backoff`` seconds."""

    crash_backoff: float = 10.0
    max_backoff: float = 300.0


@dataclass(frozen=True, slots=True)
class StartFailure:
    """``status.startFailure``: consecutive failed VMIs and when the next start may happen."""

    consecutive_fail_count: int
    last_failed_vmi_uid: str | None
    retry_after: datetime

    @classmethod
    def from_wire(cls, wire: dict[str, Any] | None) -> StartFailure | None:
        if not wire:
            return None
        retry = wire.get("retryAfterTimestamp")
        return cls(
            consecutive_fail_count=int(wire.get("consecutiveFailCount", 0)),
            last_failed_vmi_uid=wire.get("lastFailedVMIUID"),
            retry_after=parse_timestamp(retry) if retry else datetime.min.replace(tzinfo=UTC),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "consecutiveFailCount": self.consecutive_fail_count,
            "lastFailedVMIUID": self.last_failed_vmi_uid,
            "retryAfterTimestamp": timestamp(self.retry_after),
        }

    def after(self, vmi_uid: str | None, *, config: RunConfig, now: datetime) -> StartFailure:
        """The record once ``vmi_uid`` failed too: one more failure, twice the wait, up to the cap."""
        count = self.consecutive_fail_count + 1
        retry_after = now + timedelta(seconds=backoff(count, config))
        return StartFailure(count, vmi_uid, retry_after.replace(microsecond=0))  # as the wire keeps it

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.retry_after - now).total_seconds())


def backoff(count: int, config: RunConfig) -> float:
    """Seconds to wait before the start that follows the ``count``-th consecutive failure."""
    return float(min(config.crash_backoff * 2 ** (max(count, 1) - 1), config.max_backoff))


class RunAction(str, Enum):
    """The one effect a decision asks for."""

    NONE = "None"
    START = "Start"
    DELETE_VMI = "DeleteVMI"
    ORPHAN = "Orphan"  # leave the VMI running: the garbage collector orphans the dependents


@dataclass(frozen=True, slots=True)
class RunDecision:
    """What to do, the VM status to carry on with, and when to look again.

    ``failure_message`` is set when this decision counted a newly failed VMI (a Warning event on it).
    """

    action: RunAction
    status: VirtualMachineStatus
    requeue_after: float | None = None
    failure_message: str | None = None

    @property
    def crash_looping(self) -> bool:
        """Waiting out a start-failure backoff (printableStatus CrashLoopBackOff)."""
        return self.status.start_failure is not None and self.requeue_after is not None


def _phase(vmi: VirtualMachineInstance | None) -> VMIPhase | None:
    return vmi.status.phase if vmi is not None and vmi.status is not None else None


def decide(
    vm: VirtualMachine, vmi: VirtualMachineInstance | None, config: RunConfig, now: datetime
) -> RunDecision:
    """What the controller does about ``vm``'s ``vmi`` (None when there is none) at ``now``."""
    status = vm.status or VirtualMachineStatus()
    if vm.metadata.deletion_timestamp:
        if ORPHAN_FINALIZER in (vm.metadata.finalizers or ()):
            return RunDecision(RunAction.ORPHAN, status)
        return RunDecision(RunAction.DELETE_VMI if vmi is not None else RunAction.NONE, status)
    if vmi is not None and vmi.metadata.deletion_timestamp:
        return RunDecision(RunAction.NONE, status)  # the agent is stopping the guest
    if status.state_change_requests:
        return _request(vmi, status)
    strategy = effective_run_strategy(vm)
    phase = _phase(vmi)
    if strategy is RunStrategy.HALTED:
        cleared = status.model_copy(update={"start_failure": None})
        return RunDecision(RunAction.DELETE_VMI if vmi is not None else RunAction.NONE, cleared)
    if vmi is not None and phase in FINAL_PHASES:
        assert phase is not None
        if not wants_restart_after(strategy, phase):
            return RunDecision(RunAction.NONE, status)
        return _replace_finished(vmi, phase, status, config, now)
    if vmi is None and strategy in _STARTS_WITHOUT_VMI:
        if strategy is RunStrategy.ONCE and status.created:
            return RunDecision(RunAction.NONE, status)
        failure = StartFailure.from_wire(status.start_failure)
        wait = failure.seconds_left(now) if failure is not None else 0.0
        if wait > 0:
            return RunDecision(RunAction.NONE, status, requeue_after=wait)
        return RunDecision(RunAction.START, status)
    if phase is VMIPhase.RUNNING and status.start_failure is not None:
        status = status.model_copy(update={"start_failure": None})
    return RunDecision(RunAction.NONE, status)


def _request(vmi: VirtualMachineInstance | None, status: VirtualMachineStatus) -> RunDecision:
    requests = list(status.state_change_requests or [])
    first = requests[0]
    if first.action == "Stop":
        if vmi is not None and (first.uid is None or first.uid == vmi.metadata.uid):
            return RunDecision(RunAction.DELETE_VMI, status)  # dropped once the VMI is gone
        action = RunAction.NONE
    elif vmi is None:
        action = RunAction.START
    elif _phase(vmi) in FINAL_PHASES:
        return RunDecision(RunAction.DELETE_VMI, status)  # the Start is acted on once it is gone
    else:
        action = RunAction.NONE  # already running: nothing to start
    rest = requests[1:] or None
    return RunDecision(action, status.model_copy(update={"state_change_requests": rest}))


def _replace_finished(
    vmi: VirtualMachineInstance,
    phase: VMIPhase,
    status: VirtualMachineStatus,
    config: RunConfig,
    now: datetime,
) -> RunDecision:
    """Delete a finished VMI so a new one starts; a newly failed one extends the backoff."""
    failure = StartFailure.from_wire(status.start_failure)
    message = None
    if phase is VMIPhase.FAILED and (failure is None or failure.last_failed_vmi_uid != vmi.metadata.uid):
        previous = failure or StartFailure(0, None, now)
        failure = previous.after(vmi.metadata.uid, config=config, now=now)
        status = status.model_copy(update={"start_failure": failure.to_wire()})
        reason = vmi.status.reason if vmi.status is not None else None
        delay = backoff(failure.consecutive_fail_count, config)
        message = f"the guest failed ({reason or 'unknown reason'}); restarting in {delay:.0f}s"
    wait = failure.seconds_left(now) if failure is not None else 0.0
    return RunDecision(RunAction.DELETE_VMI, status, requeue_after=wait or None, failure_message=message)
