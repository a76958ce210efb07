"""Store keys of the resources vmplane keeps (``plural.group``; the core group has no suffix)."""

from __future__ import annotations

__all__ = [
    "CLUSTER_INSTANCETYPES",
    "CLUSTER_PREFERENCES",
    "CONTROLLER_REVISIONS",
    "EVENTS",
    "INSTANCETYPES",
    "KUBEVIRTS",
    "LEASES",
    "MAINTENANCE_WINDOWS",
    "NAMESPACES",
    "NODES",
    "PREFERENCES",
    "VIRTUAL_MACHINES",
    "VIRTUAL_MACHINE_INSTANCES",
    "VIRTUAL_MACHINE_INSTANCE_MIGRATIONS",
]

VIRTUAL_MACHINES = "virtualmachines.kubevirt.io"
VIRTUAL_MACHINE_INSTANCES = "virtualmachineinstances.kubevirt.io"
VIRTUAL_MACHINE_INSTANCE_MIGRATIONS = "virtualmachineinstancemigrations.kubevirt.io"
KUBEVIRTS = "kubevirts.kubevirt.io"
CONTROLLER_REVISIONS = "controllerrevisions.apps"
EVENTS = "events"
NODES = "nodes"
LEASES = "leases.coordination.k8s.io"
NAMESPACES = "namespaces"
MAINTENANCE_WINDOWS = "maintenancewindows.vmplane.io"
INSTANCETYPES = "virtualmachineinstancetypes.instancetype.kubevirt.io"
CLUSTER_INSTANCETYPES = "virtualmachineclusterinstancetypes.instancetype.kubevirt.io"
PREFERENCES = "virtualmachinepreferences.instancetype.kubevirt.io"
CLUSTER_PREFERENCES = "virtualmachineclusterpreferences.instancetype.kubevirt.io"
