"""Store keys of the resources vmplane keeps (``plural.group``; the core group has no suffix)."""

from __future__ import annotations

__all__ = [
    "CONTROLLER_REVISIONS",
    "EVENTS",
    "KUBEVIRTS",
    "LEASES",
    "MAINTENANCE_WINDOWS",
    "NAMESPACES",
    "NODES",
    "VIRTUAL_MACHINES",
    "VIRTUAL_MACHINE_INSTANCES",
]

VIRTUAL_MACHINES = "virtualmachines.kubevirt.io"
VIRTUAL_MACHINE_INSTANCES = "virtualmachineinstances.kubevirt.io"
KUBEVIRTS = "kubevirts.kubevirt.io"
CONTROLLER_REVISIONS = "controllerrevisions.apps"
EVENTS = "events"
NODES = "nodes"
LEASES = "leases.coordination.k8s.io"
NAMESPACES = "namespaces"
MAINTENANCE_WINDOWS = "maintenancewindows.vmplane.io"
