"""What a VM's restart approval asks for now: ``Automatic`` restarts at once when something is
pending and nothing forbids it; ``Window`` carries a ``RestartScheduled`` condition naming the window
that will restart it and when; ``Manual`` (the default) does nothing. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from vmplane.api.maintenance import MaintenanceWindow
from vmplane.api.meta import Condition
from vmplane.api.restart_approval import RestartApproval
from vmplane.api.timestamps import timestamp
from vmplane.rollout.restarts import VMState, selects
from vmplane.rollout.windows import window_next_start

__all__ = ["RESTART_SCHEDULED", "ApprovalDecision", "approval_decision"]

RESTART_SCHEDULED = "RestartScheduled"


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """What a VM's approval asks for now: a restart (``Automatic``), and its ``RestartScheduled``
    condition (``Window`` with something pending; None: the VM carries no such condition)."""

    restart: bool
    scheduled: Condition | None


def approval_decision(vm: VMState, windows: Sequence[MaintenanceWindow], now: datetime) -> ApprovalDecision:
    """``Automatic``: restart at once when something is pending and nothing forbids it; ``Window``:
    say which window restarts the VM and when; ``Manual``: nothing."""
    if not vm.pending or vm.approval is RestartApproval.MANUAL:
        return ApprovalDecision(restart=False, scheduled=None)
    if vm.approval is RestartApproval.AUTOMATIC:
        return ApprovalDecision(
            restart=vm.vmi_uid is not None and vm.blocked is None and vm.restartable, scheduled=None
        )
    starts = sorted(
        ((window_next_start(w, now), w.metadata.name or "") for w in windows if selects(w.spec, vm)),
    )
    if not starts:
        condition = Condition(
            type=RESTART_SCHEDULED,
            status="False",
            reason="NoMaintenanceWindow",
            message="restart approval is Window but no MaintenanceWindow selects this VM",
        )
        return ApprovalDecision(restart=False, scheduled=condition)
    start, name = starts[0]
    condition = Condition(
        type=RESTART_SCHEDULED,
        status="True",
        reason="MaintenanceWindow",
        message=f"pending changes apply in MaintenanceWindow {name} starting {timestamp(start)}",
    )
    return ApprovalDecision(restart=False, scheduled=condition)
