"""What the agent does to a running guest for the ``pause``/``unpause``/``reset``/``softreboot`` requests
the API left on its VMI (``api.guest_ops``): a pure decision and the hypervisor calls it names.

Pause is a level: the guest should be paused exactly while ``vmplane.io/pause`` is set, whatever the
hypervisor says now. Reset and soft reboot are one-shot: a token not yet copied to ``-done``.

Soft reboot: upstream's virt-launcher asks libvirt to reboot with the guest agent when it is
connected, else by the ACPI power button with libvirt's "fake reboot" (restart QEMU's guest once it
powers off). vmplane has no guest agent yet and QEMU here ends when its guest powers off, so the
closest QMP means is Ctrl-Alt-Delete on the guest's keyboard (``send-key``): a guest init reboots
cleanly, and a kernel whose init has not claimed the keys restarts at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from vmplane.api.guest_ops import PAUSE_ANNOTATION, GuestAction, pending_requests
from vmplane.hypervisor.base import Hypervisor, MachineState, ObservedMachine

__all__ = ["STEP_MESSAGES", "GuestStep", "LifecyclePlan", "lifecycle_plan", "perform"]


class GuestStep(str, Enum):
    """One hypervisor call, named after the event the agent records for it."""

    RESET = "Reset"
    SOFT_REBOOT = "SoftRebooted"
    PAUSE = "Paused"
    RESUME = "Unpaused"


#: The message of the Normal event recorded once a step was taken.
STEP_MESSAGES: Mapping[GuestStep, str] = {
    GuestStep.RESET: "The guest was reset.",
    GuestStep.SOFT_REBOOT: "The guest was asked to reboot (Ctrl-Alt-Delete).",
    GuestStep.PAUSE: "The guest was paused.",
    GuestStep.RESUME: "The guest was unpaused.",
}


@dataclass(frozen=True, slots=True)
class LifecyclePlan:
    """The steps to take in order, and the one-shot requests they carry out."""

    steps: tuple[GuestStep, ...]
    taken: tuple[GuestAction, ...]


_ONE_SHOT = {GuestAction.RESET: GuestStep.RESET, GuestAction.SOFT_REBOOT: GuestStep.SOFT_REBOOT}


def lifecycle_plan(annotations: Mapping[str, str], observed: ObservedMachine) -> LifecyclePlan:
    """The steps for a machine as ``observed`` (none unless it runs).

    A pending reset makes a pending soft reboot moot (both are carried out by the reset). A soft
    reboot of a guest that stays paused cannot happen (its vCPUs do not run), so it waits for unpause.
    """
    if observed.state is not MachineState.RUNNING:
        return LifecyclePlan((), ())
    want_paused = annotations.get(PAUSE_ANNOTATION) == "true"
    pending = pending_requests(annotations)
    steps: list[GuestStep] = []
    taken: tuple[GuestAction, ...] = ()
    if GuestAction.RESET in pending:
        steps.append(GuestStep.RESET)
        taken = pending
    elif GuestAction.SOFT_REBOOT in pending and not want_paused:
        steps.append(GuestStep.SOFT_REBOOT)
        taken = (GuestAction.SOFT_REBOOT,)
    if want_paused != observed.paused:
        # Resume before a soft reboot (the guest must run to reboot), pause after anything else.
        if want_paused:
            steps.append(GuestStep.PAUSE)
        else:
            steps.insert(0, GuestStep.RESUME)
    return LifecyclePlan(tuple(steps), taken)


async def perform(hypervisor: Hypervisor, machine: str, step: GuestStep) -> None:
    """Make the hypervisor call of ``step``."""
    if step is GuestStep.RESET:
        await hypervisor.reset(machine)
    elif step is GuestStep.SOFT_REBOOT:
        await hypervisor.soft_reboot(machine)
    elif step is GuestStep.PAUSE:
        await hypervisor.pause(machine)
    else:
        await hypervisor.resume(machine)
