"""Restart approval: who may restart a VM to apply its pending changes, and when.

A vmplane extension carried as the annotation ``vmplane.io/restart-approval`` on the VM (or on its
template's metadata), not as a field: KubeVirt's ``VirtualMachine`` schema stays exactly upstream's,
so a manifest carrying it still applies to a real KubeVirt cluster (which ignores the annotation).
The VM's own annotation wins over the template's.
"""

from __future__ import annotations

from enum import Enum

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.vm import VirtualMachine

__all__ = ["RESTART_APPROVAL_ANNOTATION", "RestartApproval", "approval_causes", "restart_approval"]

RESTART_APPROVAL_ANNOTATION = "vmplane.io/restart-approval"


class RestartApproval(str, Enum):
    """``Manual``: only a user's restart applies pending changes (today's behaviour, the default);
    ``Automatic``: vmplane restarts as soon as something is pending; ``Window``: vmplane restarts in
    the next ``MaintenanceWindow`` that selects the VM."""

    MANUAL = "Manual"
    AUTOMATIC = "Automatic"
    WINDOW = "Window"


_SUPPORTED = ", ".join(f'"{a.value}"' for a in RestartApproval)


def _sources(vm: VirtualMachine) -> list[tuple[str, str]]:
    """(field path, value) of the annotation where it is set, the VM's own first."""
    found: list[tuple[str, str]] = []
    own = vm.metadata.annotations or {}
    if RESTART_APPROVAL_ANNOTATION in own:
        found.append(("metadata.annotations", own[RESTART_APPROVAL_ANNOTATION]))
    template = vm.spec.template.metadata
    inherited = (template.annotations if template is not None else None) or {}
    if RESTART_APPROVAL_ANNOTATION in inherited:
        found.append(("spec.template.metadata.annotations", inherited[RESTART_APPROVAL_ANNOTATION]))
    return found


def approval_causes(vm: VirtualMachine) -> list[FieldCause]:
    """Admission: every annotation value that is not one of the three modes."""
    supported = {a.value for a in RestartApproval}
    return [
        FieldCause(
            f"{path}[{RESTART_APPROVAL_ANNOTATION}]",
            f'Unsupported value: "{value}": supported values: {_SUPPORTED}',
            CauseType.FIELD_VALUE_NOT_SUPPORTED,
        )
        for path, value in _sources(vm)
        if value not in supported
    ]


def restart_approval(vm: VirtualMachine) -> RestartApproval:
    """The VM's mode; ``Manual`` when unset (or, past admission, unreadable: never restart uninvited)."""
    sources = _sources(vm)
    if not sources:
        return RestartApproval.MANUAL
    try:
        return RestartApproval(sources[0][1])
    except ValueError:
        return RestartApproval.MANUAL
