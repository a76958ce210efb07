"""The node agent's decision for one VMI: a pure ``decide(vmi, observed, ...) -> AgentPlan``.

The agent's reconcile reads the VMI, what the hypervisor observes of its machine and the machine the
VMI spec translates to, asks ``decide`` what to do, and only then acts (``NodeAgent._act``). The plan
is a tagged union, one frozen dataclass per kind of step, so the ``match`` that acts on it is checked
for exhaustiveness by mypy (``assert_never``). Hotplugs within a ``Sync`` are ``agent.hotplug``
operations, themselves a tagged union.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmplane.agent.hotplug import Operation, operations
from vmplane.agent.status import FINAL_PHASES, machine_status, phase_status
from vmplane.api.migratable import MigrationSupport
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus, VMIPhase
from vmplane.host.paths import MachineSpecError
from vmplane.hypervisor.base import MachineSpec, MachineState, ObservedMachine
from vmplane.rollout.failures import failed_hotplugs

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "LOST_MACHINE",
    "AgentPlan",
    "Boot",
    "Discard",
    "Finalize",
    "Ignore",
    "Report",
    "Sync",
    "decide",
    "decide_sync",
]

#: ``terminationGracePeriodSeconds`` when a VMI does not say (Kubernetes' default).
DEFAULT_GRACE_PERIOD = 30.0
LOST_MACHINE = "the machine is gone: the hypervisor does not know it"


@dataclass(frozen=True, slots=True)
class Ignore:
    """Not this node's VMI (or nothing to do)."""


@dataclass(frozen=True, slots=True)
class Discard:
    """The VMI is gone or has ended: stop its machine if it still runs, and forget it."""


@dataclass(frozen=True, slots=True)
class Finalize:
    """The VMI is being deleted: stop its machine within ``grace_period``, release its files, then
    its finalizer."""

    grace_period: float


@dataclass(frozen=True, slots=True)
class Boot:
    """Start the machine ``spec`` describes (after preparing its disks)."""

    spec: MachineSpec


@dataclass(frozen=True, slots=True)
class Report:
    """Write ``status`` (when it differs from the stored one); no machine to touch."""

    status: VirtualMachineInstanceStatus


@dataclass(frozen=True, slots=True)
class Sync:
    """Bring a machine in line with its spec: apply the operations in order, reporting ``in_flight``
    (when there are operations) if they take a while, then report what the machine has.

    ``desired`` is None when the spec cannot be translated (nothing is then hot-plugged);
    ``failures`` are the paths already failed (not retried), to which the act adds its own.
    """

    desired: MachineSpec | None
    operations: tuple[Operation, ...]
    in_flight: VirtualMachineInstanceStatus | None
    failures: Mapping[str, str]


AgentPlan = Ignore | Discard | Finalize | Boot | Report | Sync


def decide(
    vmi: VirtualMachineInstance | None,
    observed: ObservedMachine | None,
    desired: MachineSpec | MachineSpecError,
    *,
    node: str,
    now: str,
    support: MigrationSupport = MigrationSupport(),  # noqa: B008 - frozen, shared safely
) -> AgentPlan:
    """What to do for ``vmi`` (None: it is gone) whose machine the hypervisor reports as
    ``observed`` (None: it knows none) and whose spec translates to ``desired`` (or fails to)."""
    if vmi is None:
        return Discard()
    status = vmi.status or VirtualMachineInstanceStatus()
    if status.node_name != node:
        return Ignore()
    if vmi.metadata.deletion_timestamp:
        grace = vmi.spec.termination_grace_period_seconds
        return Finalize(DEFAULT_GRACE_PERIOD if grace is None else float(grace))
    if status.phase in FINAL_PHASES:
        return Discard()  # it ended; the VM controller decides what comes next
    if observed is None:
        if status.phase is VMIPhase.RUNNING:
            return Report(phase_status(vmi, VMIPhase.FAILED, reason=LOST_MACHINE, now=now))
        if isinstance(desired, MachineSpecError):
            return Report(phase_status(vmi, VMIPhase.FAILED, reason=f"cannot start: {desired}", now=now))
        return Boot(desired)
    return decide_sync(vmi, observed, desired, now=now, support=support)


def decide_sync(
    vmi: VirtualMachineInstance,
    observed: ObservedMachine,
    desired: MachineSpec | MachineSpecError,
    *,
    now: str,
    support: MigrationSupport = MigrationSupport(),  # noqa: B008 - frozen, shared safely
) -> Sync:
    """The hotplugs that give a machine what its VMI spec says, failed paths left alone (``support``:
    what this node can do to migrate, for the ``LiveMigratable`` condition)."""
    spec = None if isinstance(desired, MachineSpecError) else desired
    failures = failed_hotplugs(vmi.status)
    pending: list[Operation] = []
    if spec is not None and observed.state is MachineState.RUNNING:
        pending = operations(spec, observed, skip=failures)
    # The hotplugs in flight (HotVCPUChange/HotMemoryChange True), reported if they take a while.
    in_flight = (
        machine_status(vmi, observed, desired=spec, failures=failures, now=now, support=support)
        if pending
        else None
    )
    return Sync(spec, tuple(pending), in_flight, failures)
