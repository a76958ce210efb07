"""The guest steps the agent takes for the pause, reset and soft-reboot requests on a VMI."""

from __future__ import annotations

import pytest

from vmplane.agent.lifecycle import GuestStep, lifecycle_plan
from vmplane.api.guest_ops import PAUSE_ANNOTATION, GuestAction
from vmplane.hypervisor.base import MachineState, ObservedMachine

RUNNING = ObservedMachine(name="m", state=MachineState.RUNNING)
PAUSED = ObservedMachine(name="m", state=MachineState.RUNNING, paused=True)
RESET = {"vmplane.io/reset": "t"}
SOFT = {"vmplane.io/soft-reboot": "t"}
WANT_PAUSED = {PAUSE_ANNOTATION: "true"}


@pytest.mark.parametrize(
    ("annotations", "observed", "steps", "taken"),
    [
        ({}, RUNNING, (), ()),
        (WANT_PAUSED, RUNNING, (GuestStep.PAUSE,), ()),
        (WANT_PAUSED, PAUSED, (), ()),
        ({}, PAUSED, (GuestStep.RESUME,), ()),
        (RESET, RUNNING, (GuestStep.RESET,), (GuestAction.RESET,)),
        ({**RESET, "vmplane.io/reset-done": "t"}, RUNNING, (), ()),
        ({**RESET, **SOFT}, RUNNING, (GuestStep.RESET,), (GuestAction.RESET, GuestAction.SOFT_REBOOT)),
        ({**SOFT, **WANT_PAUSED}, PAUSED, (), ()),
        (SOFT, PAUSED, (GuestStep.RESUME, GuestStep.SOFT_REBOOT), (GuestAction.SOFT_REBOOT,)),
        ({**RESET, **WANT_PAUSED}, RUNNING, (GuestStep.RESET, GuestStep.PAUSE), (GuestAction.RESET,)),
    ],
    ids=[
        "nothing",
        "pause",
        "already-paused",
        "resume",
        "reset",
        "reset-done",
        "reset-covers-soft-reboot",
        "soft-reboot-waits-for-unpause",
        "resume-then-soft-reboot",
        "reset-then-pause",
    ],
)
def test_plan(
    annotations: dict[str, str],
    observed: ObservedMachine,
    steps: tuple[GuestStep, ...],
    taken: tuple[GuestAction, ...],
) -> None:
    plan = lifecycle_plan(annotations, observed)
    assert (plan.steps, plan.taken) == (steps, taken)


def test_a_machine_that_does_not_run_gets_no_steps() -> None:
    starting = ObservedMachine(name="m", state=MachineState.STARTING)
    assert lifecycle_plan({**RESET, **WANT_PAUSED}, starting).steps == ()
