"""Operations on a running guest (``pause``, ``unpause``, ``reset``, ``softreboot``): upstream's rules
and the requests the API leaves on the VMI for its node agent. Pure.

Upstream's virt-api forwards these calls to virt-handler over a direct connection. vmplane's agent
talks to the API only, so the API records the request on the VMI and the agent acts on it, level-
triggered like every other vmplane loop:

* ``vmplane.io/pause: "true"`` while the user wants the guest paused (``unpause`` removes it);
* ``vmplane.io/reset`` and ``vmplane.io/soft-reboot`` hold the token of the latest request; the agent
  copies a token to ``...-done`` before it acts, so each request is carried out at most once, even
  when the agent restarts meanwhile.

The messages are upstream's (``pkg/virt-api/rest/subresource.go``), with the status code it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from vmplane.api.vmi import VirtualMachineInstance, VMIPhase

__all__ = [
    "AGENT_CONNECTED",
    "AGENT_QUERIES",
    "PAUSED",
    "PAUSED_BY_USER",
    "PAUSE_ANNOTATION",
    "REQUEST_ANNOTATIONS",
    "GuestAction",
    "GuestOpRefusedError",
    "check_agent_query",
    "check_request",
    "done_annotations",
    "is_paused",
    "pending_requests",
    "requested_annotations",
]

PAUSED = "Paused"
PAUSED_BY_USER = "PausedByUser"
AGENT_CONNECTED = "AgentConnected"
PAUSE_ANNOTATION = "vmplane.io/pause"


class GuestAction(str, Enum):
    """A subresource of ``virtualmachineinstances/{name}`` that operates the running guest."""

    PAUSE = "pause"
    UNPAUSE = "unpause"
    RESET = "reset"
    SOFT_REBOOT = "softreboot"


#: One-shot requests: the annotation holding the latest request's token (``<annotation>-done``: the
#: token the agent has carried out).
REQUEST_ANNOTATIONS: Mapping[GuestAction, str] = {
    GuestAction.RESET: "vmplane.io/reset",
    GuestAction.SOFT_REBOOT: "vmplane.io/soft-reboot",
}
DONE_SUFFIX = "-done"


@dataclass(frozen=True, slots=True)
class GuestOpRefusedError(Exception):
    """Upstream refuses the request: ``code`` 409 (Conflict) or 403 (Forbidden), with its message."""

    code: int
    message: str

    def __str__(self) -> str:
        return self.message


def is_paused(vmi: VirtualMachineInstance) -> bool:
    """The VMI reports its guest paused (condition ``Paused`` True)."""
    condition = vmi.status.condition(PAUSED) if vmi.status is not None else None
    return condition is not None and condition.status == "True"


def _agent_connected(vmi: VirtualMachineInstance) -> bool:
    condition = vmi.status.condition(AGENT_CONNECTED) if vmi.status is not None else None
    return condition is not None and condition.status == "True"


def check_request(vmi: VirtualMachineInstance, action: GuestAction) -> None:
    """Raise GuestOpRefusedError where upstream refuses ``action`` on ``vmi`` now."""
    phase = vmi.status.phase if vmi.status is not None else None
    running = phase is VMIPhase.RUNNING and not vmi.metadata.deletion_timestamp
    if action is GuestAction.PAUSE:
        if not running:
            raise GuestOpRefusedError(409, "VM is not running")
        if is_paused(vmi):
            raise GuestOpRefusedError(409, "VMI is already paused")
    elif action is GuestAction.UNPAUSE:
        if not running:
            raise GuestOpRefusedError(409, "VMI is not running")
        if not is_paused(vmi):
            raise GuestOpRefusedError(409, "VMI is not paused")
    elif action is GuestAction.RESET:
        if not running:
            shown = phase.value if phase is not None else "Pending"
            raise GuestOpRefusedError(409, f"Failed to reset non-running VMI with phase {shown}")
    else:
        if not running:
            raise GuestOpRefusedError(409, "VM is not running")
        if is_paused(vmi):
            raise GuestOpRefusedError(409, "VMI is paused")
        features = vmi.spec.domain.features
        acpi = features.acpi if features is not None else None
        if not _agent_connected(vmi) and acpi is not None and acpi.enabled is False:
            raise GuestOpRefusedError(
                409, "VMI neither have the agent connected nor the ACPI feature enabled"
            )


#: The subresources upstream answers from the guest agent (``GET``).
AGENT_QUERIES = frozenset({"guestosinfo", "userlist", "filesystemlist"})


def check_agent_query(vmi: VirtualMachineInstance) -> None:
    """Raise GuestOpRefusedError where upstream refuses a guest-agent query on ``vmi``."""
    phase = vmi.status.phase if vmi.status is not None else None
    if phase is not VMIPhase.RUNNING:
        raise GuestOpRefusedError(409, "VMI is not running")
    if not _agent_connected(vmi):
        raise GuestOpRefusedError(409, "VMI does not have guest agent connected")


def requested_annotations(
    annotations: Mapping[str, str], action: GuestAction, *, token: str
) -> dict[str, str]:
    """The VMI's annotations once ``action`` is requested (``token`` names a one-shot request)."""
    updated = dict(annotations)
    if action is GuestAction.PAUSE:
        updated[PAUSE_ANNOTATION] = "true"
    elif action is GuestAction.UNPAUSE:
        updated.pop(PAUSE_ANNOTATION, None)
    else:
        updated[REQUEST_ANNOTATIONS[action]] = token
    return updated


def pending_requests(annotations: Mapping[str, str]) -> tuple[GuestAction, ...]:
    """The one-shot requests not carried out yet, reset first (a reset makes a soft reboot moot)."""
    pending = []
    for action, key in REQUEST_ANNOTATIONS.items():
        token = annotations.get(key)
        if token and annotations.get(key + DONE_SUFFIX) != token:
            pending.append(action)
    return tuple(pending)


def done_annotations(annotations: Mapping[str, str], actions: tuple[GuestAction, ...]) -> dict[str, str]:
    """The annotations once the agent took on ``actions`` (their tokens copied to ``-done``)."""
    updated = dict(annotations)
    for action in actions:
        key = REQUEST_ANNOTATIONS[action]
        updated[key + DONE_SUFFIX] = annotations[key]
    return updated
