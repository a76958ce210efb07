"""The live field families of a VMI spec, and the ``[name=...]`` path syntax, declared once.

Everything that names a live-updatable field reads it from here: the diff (which lists are named),
the live-update table (which family a path belongs to), revert (a disk's partner volume), the
observed-state decoder (which path a failed hotplug stands for) and the node agent (which path an
operation serves). A path is relative to the VMI spec: ``domain.cpu.sockets``,
``domain.devices.disks[name=data]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "AFFINITY_FIELDS",
    "CPU_SOCKETS",
    "DISKS",
    "DISK_FIELDS",
    "FAMILIES",
    "INTERFACES",
    "INTERFACE_FIELDS",
    "MEMORY_FIELDS",
    "MEMORY_GUEST",
    "NAMED_LISTS",
    "NETWORKS",
    "NETWORK_FIELDS",
    "NODE_SELECTOR_FIELDS",
    "PARTNERS",
    "REPORTED_BY_NODE_AGENT",
    "SOCKETS_FIELDS",
    "TOLERATION_FIELDS",
    "VOLUMES",
    "VOLUME_FIELDS",
    "Family",
    "LiveKind",
    "disk_path",
    "element_of",
    "family_of",
    "interface_path",
    "named_path",
    "network_path",
    "volume_path",
]


class LiveKind(str, Enum):
    """What a live change does to the guest."""

    CPU = "cpu"
    MEMORY = "memory"
    PLACEMENT = "placement"
    DISK = "disk"
    INTERFACE = "interface"


#: The live kinds a node agent applies to the guest and reports itself, as one ``HotplugApplied`` or
#: ``HotplugFailed`` event with the outcome; the VM controller announces only the others (placement).
REPORTED_BY_NODE_AGENT = frozenset({LiveKind.CPU, LiveKind.MEMORY, LiveKind.DISK, LiveKind.INTERFACE})


CPU_SOCKETS = "domain.cpu.sockets"
MEMORY_GUEST = "domain.memory.guest"
DISKS = "domain.devices.disks"
INTERFACES = "domain.devices.interfaces"
VOLUMES = "volumes"
NETWORKS = "networks"
#: Lists whose elements are addressed by name, never by index, so a path keeps meaning the same
#: element when the list is reordered; other lists are values like any scalar.
NAMED_LISTS = frozenset({DISKS, INTERFACES, VOLUMES, NETWORKS})
#: A disk and its volume (an interface and its network) share a name and only make sense together.
PARTNERS = {DISKS: VOLUMES, VOLUMES: DISKS, INTERFACES: NETWORKS, NETWORKS: INTERFACES}

_ELEMENT = re.compile(r"(?P<list>.+)\[name=(?P<name>[^\]]+)\]")


def named_path(list_path: str, name: str) -> str:
    """The path of the element called ``name`` in the named list ``list_path``."""
    return f"{list_path}[name={name}]"


def element_of(path: str) -> tuple[str, str] | None:
    """``(list path, name)`` when ``path`` is a whole element of a named list; None otherwise."""
    match = _ELEMENT.fullmatch(path)
    if match is None or match.group("list") not in NAMED_LISTS:
        return None
    return match.group("list"), match.group("name")


def disk_path(name: str) -> str:
    return named_path(DISKS, name)


def volume_path(name: str) -> str:
    return named_path(VOLUMES, name)


def interface_path(name: str) -> str:
    return named_path(INTERFACES, name)


def network_path(name: str) -> str:
    return named_path(NETWORKS, name)


@dataclass(frozen=True, slots=True)
class Family:
    """The paths (a regular expression over VMI spec paths) that make up one live field family."""

    kind: LiveKind
    pattern: str

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None


def _named(list_path: str) -> str:
    return re.escape(list_path) + r"\[name=[^\]]+\]"


SOCKETS_FIELDS = Family(LiveKind.CPU, re.escape(CPU_SOCKETS))
MEMORY_FIELDS = Family(LiveKind.MEMORY, re.escape(MEMORY_GUEST))
NODE_SELECTOR_FIELDS = Family(LiveKind.PLACEMENT, "nodeSelector")
AFFINITY_FIELDS = Family(LiveKind.PLACEMENT, "affinity")
TOLERATION_FIELDS = Family(LiveKind.PLACEMENT, "tolerations")
DISK_FIELDS = Family(LiveKind.DISK, _named(DISKS))
VOLUME_FIELDS = Family(LiveKind.DISK, _named(VOLUMES))
INTERFACE_FIELDS = Family(LiveKind.INTERFACE, _named(INTERFACES))
NETWORK_FIELDS = Family(LiveKind.INTERFACE, _named(NETWORKS))
#: Every live-updatable path, by family; a path none matches is not live-updatable.
FAMILIES: tuple[Family, ...] = (
    SOCKETS_FIELDS,
    MEMORY_FIELDS,
    NODE_SELECTOR_FIELDS,
    AFFINITY_FIELDS,
    TOLERATION_FIELDS,
    DISK_FIELDS,
    VOLUME_FIELDS,
    INTERFACE_FIELDS,
    NETWORK_FIELDS,
)


def family_of(path: str) -> Family | None:
    """The family ``path`` belongs to (None: not live-updatable)."""
    return next((f for f in FAMILIES if f.matches(path)), None)
