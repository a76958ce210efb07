"""Run strategies and the start/stop/restart requests, with upstream KubeVirt's rules and messages.

Pure: the API's subresource handlers ask ``request_start``/``request_stop``/``request_restart`` what a
request means for a VM (a new run strategy, state-change requests, or a refusal), and the VM
controller asks ``effective_run_strategy`` and ``wants_restart_after`` how to treat its VMI.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmplane.api.vm import RunStrategy, StateChangeRequest, VirtualMachine
from vmplane.api.vmi import VMIPhase

__all__ = [
    "LifecycleConflictError",
    "RunRequest",
    "effective_run_strategy",
    "request_restart",
    "request_start",
    "request_stop",
    "wants_restart_after",
]


class LifecycleConflictError(Exception):
    """The request contradicts the VM's state or run strategy (HTTP 409 Conflict)."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a request changes: a new run strategy (None: unchanged) and state-change requests to add."""

    run_strategy: RunStrategy | None = None
    state_change_requests: tuple[StateChangeRequest, ...] = ()


def effective_run_strategy(vm: VirtualMachine) -> RunStrategy:
    """``runStrategy``, or legacy ``running`` (true: Always, false/absent: Halted)."""
    if vm.spec.run_strategy is not None:
        return vm.spec.run_strategy
    return RunStrategy.ALWAYS if vm.spec.running else RunStrategy.HALTED


def request_start(vm: VirtualMachine, *, vmi_exists: bool) -> RunRequest:
    """The meaning of ``PUT .../start``."""
    strategy = effective_run_strategy(vm)
    if strategy in (RunStrategy.ALWAYS, RunStrategy.RERUN_ON_FAILURE) and vmi_exists:
        raise LifecycleConflictError("VM is already running")
    if strategy is RunStrategy.ONCE:
        raise LifecycleConflictError(f"RunStategy {strategy.value} does not support manual start requests")
    if strategy is RunStrategy.MANUAL:
        if vmi_exists:
            raise LifecycleConflictError("VM is already running")
        return RunRequest(state_change_requests=(StateChangeRequest(action="Start"),))
    return RunRequest(
        run_strategy=RunStrategy.ALWAYS if strategy is RunStrategy.HALTED else None,
        state_change_requests=(StateChangeRequest(action="Start"),),
    )


def request_stop(vm: VirtualMachine, *, vmi_uid: str | None) -> RunRequest:
    """The meaning of ``PUT .../stop``."""
    strategy = effective_run_strategy(vm)
    if vmi_uid is None and strategy in (RunStrategy.HALTED, RunStrategy.MANUAL):
        raise LifecycleConflictError("VM is not running")
    stop = (StateChangeRequest(action="Stop", uid=vmi_uid),) if vmi_uid is not None else ()
    if strategy is RunStrategy.MANUAL:
        return RunRequest(state_change_requests=stop)
    return RunRequest(run_strategy=RunStrategy.HALTED, state_change_requests=stop)


def request_restart(vm: VirtualMachine, *, vmi_uid: str | None) -> RunRequest:
    """The meaning of ``PUT .../restart``: stop this VMI, then start a new one."""
    strategy = effective_run_strategy(vm)
    if strategy in (RunStrategy.HALTED, RunStrategy.ONCE):
        raise LifecycleConflictError(f"RunStategy {strategy.value} does not support manual restart requests")
    if vmi_uid is None:
        raise LifecycleConflictError(f"VM is not running: {strategy.value}")
    return RunRequest(
        state_change_requests=(
            StateChangeRequest(action="Stop", uid=vmi_uid),
            StateChangeRequest(action="Start"),
        )
    )


def wants_restart_after(strategy: RunStrategy, phase: VMIPhase) -> bool:
    """Whether a VMI that ended in ``phase`` is replaced by a new one under ``strategy``."""
    if strategy is RunStrategy.ALWAYS:
        return True
    if strategy is RunStrategy.RERUN_ON_FAILURE:
        return phase is VMIPhase.FAILED
    return False
