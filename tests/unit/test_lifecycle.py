"""Run strategies and start/stop/restart requests, with upstream's rules and messages."""

from __future__ import annotations

import pytest

from vmplane.api.lifecycle import (
    LifecycleConflictError,
    effective_run_strategy,
    request_restart,
    request_start,
    request_stop,
    wants_restart_after,
)
from vmplane.api.vm import RunStrategy, VirtualMachine
from vmplane.api.vmi import VMIPhase


def vm(**spec: object) -> VirtualMachine:
    return VirtualMachine.model_validate(
        {"metadata": {"name": "v"}, "spec": {"template": {"spec": {}}, **spec}}
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"runStrategy": "Manual"}, RunStrategy.MANUAL),
        ({"running": True}, RunStrategy.ALWAYS),
        ({"running": False}, RunStrategy.HALTED),
        ({}, RunStrategy.HALTED),
    ],
    ids=["run-strategy", "running-true", "running-false", "neither"],
)
def test_effective_run_strategy_reads_run_strategy_or_legacy_running(
    spec: dict[str, object], expected: RunStrategy
) -> None:
    assert effective_run_strategy(vm(**spec)) is expected


def test_start_of_halted_vm_switches_to_always() -> None:
    assert request_start(vm(runStrategy="Halted"), vmi_exists=False).run_strategy is RunStrategy.ALWAYS


def test_start_of_manual_vm_adds_a_start_request() -> None:
    wanted = request_start(vm(runStrategy="Manual"), vmi_exists=False)
    assert wanted.run_strategy is None
    assert [r.action for r in wanted.state_change_requests] == ["Start"]


def test_start_of_running_always_vm_conflicts() -> None:
    with pytest.raises(LifecycleConflictError, match="VM is already running"):
        request_start(vm(runStrategy="Always"), vmi_exists=True)


def test_stop_of_always_vm_halts_it_and_stops_the_vmi() -> None:
    wanted = request_stop(vm(runStrategy="Always"), vmi_uid="u1")
    assert wanted.run_strategy is RunStrategy.HALTED
    assert [(r.action, r.uid) for r in wanted.state_change_requests] == [("Stop", "u1")]


def test_stop_of_stopped_manual_vm_conflicts() -> None:
    with pytest.raises(LifecycleConflictError, match="VM is not running"):
        request_stop(vm(runStrategy="Manual"), vmi_uid=None)


@pytest.mark.parametrize("strategy", ["Halted", "Once"])
def test_restart_is_refused_for_halted_and_once_with_upstream_message(strategy: str) -> None:
    with pytest.raises(
        LifecycleConflictError, match=f"RunStategy {strategy} does not support manual restart requests"
    ):
        request_restart(vm(runStrategy=strategy), vmi_uid="u1")


def test_restart_without_vmi_conflicts_as_not_running() -> None:
    with pytest.raises(LifecycleConflictError, match="VM is not running: Always"):
        request_restart(vm(runStrategy="Always"), vmi_uid=None)


@pytest.mark.parametrize("strategy", ["Always", "Manual", "RerunOnFailure"])
def test_restart_stops_this_vmi_then_starts_a_new_one(strategy: str) -> None:
    wanted = request_restart(vm(runStrategy=strategy), vmi_uid="u1")
    assert [(r.action, r.uid) for r in wanted.state_change_requests] == [("Stop", "u1"), ("Start", None)]


@pytest.mark.parametrize(
    ("strategy", "phase", "restart"),
    [
        (RunStrategy.ALWAYS, VMIPhase.SUCCEEDED, True),
        (RunStrategy.ALWAYS, VMIPhase.FAILED, True),
        (RunStrategy.RERUN_ON_FAILURE, VMIPhase.FAILED, True),
        (RunStrategy.RERUN_ON_FAILURE, VMIPhase.SUCCEEDED, False),
        (RunStrategy.MANUAL, VMIPhase.FAILED, False),
        (RunStrategy.ONCE, VMIPhase.FAILED, False),
    ],
)
def test_finished_vmi_is_replaced_per_run_strategy(
    strategy: RunStrategy, phase: VMIPhase, restart: bool
) -> None:
    assert wants_restart_after(strategy, phase) is restart
