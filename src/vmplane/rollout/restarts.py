"""Restarts that apply pending changes: what a VM looks like to them (:class:`VMState`), which VMs
a window selects, in which order and batches, and whether a restarted VM passed its health gate. Pure.

``rollout.windows`` steps a window through its run with these; ``rollout.approval`` decides per VM.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from vmplane.api.lifecycle import effective_run_strategy
from vmplane.api.maintenance import BatchMember, MaintenanceWindowSpec
from vmplane.api.restart_approval import RestartApproval, restart_approval
from vmplane.api.scheduling import LabelSelector
from vmplane.api.vm import PrintableStatus, RunStrategy, VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.rollout.observed import HOT_MEMORY_CHANGE, HOT_VCPU_CHANGE
from vmplane.rollout.reasons import Reason

__all__ = [
    "GUEST_AGENT_CONDITION",
    "Gate",
    "VMState",
    "batches",
    "gate",
    "ordered",
    "scaled_max_unavailable",
    "selector_matches",
    "selects",
    "vm_state",
    "waiting",
]

#: Upstream's VMI condition for a connected guest agent: when a VMI has it, the gate waits for it.
GUEST_AGENT_CONDITION = "AgentConnected"
_BUSY_CONDITIONS = (HOT_VCPU_CHANGE, HOT_MEMORY_CHANGE)
_PERCENT = re.compile(r"^([0-9]+)%$")


@dataclass(frozen=True, slots=True)
class VMState:
    """What restart decisions read of one VM, its VMI and its namespace.

    ``vmi_uid``: the live VMI (None when there is none or it is being deleted). ``available``: Ready,
    or not meant to run at all (a halted VM is not "down"). ``blocked``: why a restart may not start
    now (a hotplug or migration in flight, a restart already asked for), None when it may.
    ``guest_reporting``: the guest agent's condition, None when the VMI has no agent.
    ``restartable``: the run strategy admits restart requests (``Halted`` and ``Once`` do not).
    """

    namespace: str
    name: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]
    approval: RestartApproval
    pending: tuple[str, ...]
    vmi_uid: str | None
    ready: bool
    available: bool
    blocked: str | None = None
    guest_reporting: bool | None = None
    restartable: bool = True

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _true(vmi: VirtualMachineInstance, type_: str) -> bool | None:
    condition = vmi.status.condition(type_) if vmi.status is not None else None
    return None if condition is None else condition.status == "True"


def _describes_an_older_spec(vm: VirtualMachine) -> bool:
    """Whether the VM's status (its pending changes) was computed for an earlier generation: a spec
    just edited or reverted, which the VM controller has not planned yet."""
    desired = vm.status.desired_generation if vm.status is not None else None
    generation = vm.metadata.generation
    return desired is not None and generation is not None and desired != generation


def vm_state(
    vm: VirtualMachine, vmi: VirtualMachineInstance | None, namespace_labels: Mapping[str, str]
) -> VMState:
    """The :class:`VMState` of a VM and the VMI of its name (the caller passes only a VMI it controls)."""
    live = vmi if vmi is not None and not vmi.metadata.deletion_timestamp else None
    status = vm.status
    blocked: str | None = None
    if status is not None and status.state_change_requests:
        blocked = "a start or stop request is still being carried out"
    elif status is not None and _describes_an_older_spec(vm):
        blocked = "its pending changes are not yet computed for its latest spec"
    elif status is not None and status.printable_status is PrintableStatus.MIGRATING:
        blocked = "the VMI is migrating"
    elif live is not None and any(_true(live, c) for c in _BUSY_CONDITIONS):
        blocked = "a hotplug is in flight"
    ready = live is not None and bool(_true(live, "Ready"))
    strategy = effective_run_strategy(vm)
    wants_running = strategy in (RunStrategy.ALWAYS, RunStrategy.RERUN_ON_FAILURE)
    return VMState(
        namespace=vm.metadata.namespace or "",
        name=vm.metadata.name or "",
        labels=vm.metadata.labels or {},
        namespace_labels=namespace_labels,
        approval=restart_approval(vm),
        # A guest on a node its placement excludes needs a migration, not a restart.
        pending=tuple(
            p.path
            for p in (status.pending_changes if status else None) or ()
            if p.reason != Reason.PLACEMENT_VIOLATED.value
        ),
        vmi_uid=live.metadata.uid if live is not None else None,
        ready=ready,
        available=ready or (live is None and not wants_running),
        blocked=blocked,
        guest_reporting=_true(live, GUEST_AGENT_CONDITION) if live is not None else None,
        restartable=strategy not in (RunStrategy.HALTED, RunStrategy.ONCE),
    )


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes' LabelSelector semantics (an empty selector matches everything)."""
    if any(labels.get(k) != v for k, v in (selector.match_labels or {}).items()):
        return False
    for requirement in selector.match_expressions or ():
        value = labels.get(requirement.key)
        values = requirement.values or []
        holds = {
            "In": value is not None and value in values,
            "NotIn": value is None or value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[requirement.operator]
        if not holds:
            return False
    return True


def selects(spec: MaintenanceWindowSpec, vm: VMState) -> bool:
    """Whether the window's VM selector and namespace selector (absent: every namespace) hold."""
    if spec.namespace_selector is not None and not selector_matches(
        spec.namespace_selector, vm.namespace_labels
    ):
        return False
    return selector_matches(spec.selector, vm.labels)


def scaled_max_unavailable(value: int | str, total: int) -> int:
    """``maxUnavailable`` as a count, as Kubernetes scales it (``GetScaledValueFromIntOrPercent``
    rounding down, as for Deployments and StatefulSets), and at least 1 so a rollout always moves."""
    if isinstance(value, int):
        return max(value, 1)
    match = _PERCENT.match(value)
    assert match is not None, "admission checked maxUnavailable"
    return max(math.floor(int(match.group(1)) * total / 100), 1)


def _priority(vm: VMState, label: str | None) -> tuple[int, int]:
    raw = vm.labels.get(label) if label else None
    try:
        return (0, int(raw)) if raw is not None else (1, 0)
    except ValueError:
        return (1, 0)  # a non-integer priority sorts with the unlabelled VMs


def ordered(vms: Iterable[VMState], priority_label: str | None) -> list[VMState]:
    """Restart order: the priority label's integer value, lowest first (unlabelled last), then name
    and namespace."""
    return sorted(vms, key=lambda vm: (_priority(vm, priority_label), vm.name, vm.namespace))


def waiting(spec: MaintenanceWindowSpec, vms: Iterable[VMState], done: set[str]) -> list[VMState]:
    """Selected ``Window`` VMs with pending changes, a running VMI and a run strategy that restarts,
    not restarted in this run."""
    return ordered(
        (
            vm
            for vm in vms
            if selects(spec, vm)
            and vm.approval is RestartApproval.WINDOW
            and vm.pending
            and vm.vmi_uid is not None
            and vm.restartable
            and vm.key not in done
        ),
        spec.priority_label,
    )


def batches(
    spec: MaintenanceWindowSpec, vms: Sequence[VMState], done: frozenset[str] = frozenset()
) -> list[list[VMState]]:
    """The batches a window would restart if it opened now with every selected VM available
    (``done``: VMs its run restarted already)."""
    size = scaled_max_unavailable(spec.max_unavailable, sum(1 for vm in vms if selects(spec, vm)))
    todo = waiting(spec, vms, set(done))
    return [todo[i : i + size] for i in range(0, len(todo), size)]


class Gate(str, Enum):
    """A restarted VM's health gate."""

    PASSED = "Passed"
    WAITING = "Waiting"
    FAILED = "Failed"


def gate(member: BatchMember, vm: VMState | None, *, started: datetime, now: datetime, timeout: int) -> Gate:
    """Passed once a new VMI (not the one restarted) is Ready, and its guest agent, when it has one,
    reports; failed when that has not happened ``timeout`` seconds after the batch started.

    A VM deleted meanwhile passes: there is nothing left to wait for.
    """
    if vm is None:
        return Gate.PASSED
    if (
        vm.vmi_uid is not None
        and vm.vmi_uid != member.vmi_uid
        and vm.ready
        and vm.guest_reporting is not False
    ):
        return Gate.PASSED
    return Gate.FAILED if now >= started + timedelta(seconds=timeout) else Gate.WAITING
