"""Why a change is pending: machine-readable reasons and the messages shown with them.

Where KubeVirt has a message for the same situation, the message is upstream's text, word for word.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["MEMORY_HOTPLUG_FAILED", "MESSAGES", "Reason"]


class Reason(str, Enum):
    """The ``reason`` of a pending change (and of ``RestartRequired``, from its first pending change)."""

    NON_LIVE_UPDATABLE = "NonLiveUpdatableChange"
    STAGED_BY_STRATEGY = "StagedByStrategy"
    CPU_SOCKETS_REDUCED = "CPUSocketsReduced"
    CPU_SOCKETS_ABOVE_MAX = "CPUSocketsAboveMax"
    CPU_HOTPLUG_UNSUPPORTED = "CPUHotplugUnsupported"
    MEMORY_BELOW_BOOT = "MemoryBelowBoot"
    MEMORY_ABOVE_MAX = "MemoryAboveMax"
    HOTPLUG_UNAVAILABLE = "HotplugUnavailable"
    HOTPLUG_FAILED = "HotplugFailed"
    CLUSTER_DEFAULT_CHANGED = "ClusterDefaultChanged"
    CDROM_REMOVED = "CDRomDiskRemoved"
    INTERFACE_REMOVED = "InterfaceRemovedWithoutAbsent"
    WAITING_FOR_RESTART = "WaitingForRestart"
    INSUFFICIENT_NODE_RESOURCES = "InsufficientNodeResources"
    PLACEMENT_VIOLATED = "PlacementViolatedByCurrentNode"


MESSAGES: dict[Reason, str] = {
    Reason.NON_LIVE_UPDATABLE: "a non-live-updatable field was changed in the template spec",
    Reason.STAGED_BY_STRATEGY: "changes are staged until the next restart: vmRolloutStrategy is Stage",
    Reason.CPU_SOCKETS_REDUCED: "Reduction of CPU socket count requires a restart",
    Reason.CPU_SOCKETS_ABOVE_MAX: (
        "CPU sockets updated in template spec to a value higher than what's available"
    ),
    Reason.CPU_HOTPLUG_UNSUPPORTED: "ARM doesn't support CPU hotplug",
    Reason.MEMORY_BELOW_BOOT: (
        "memory updated in template spec to a value lower than what the VM started with"
    ),
    Reason.MEMORY_ABOVE_MAX: (
        "memory hotplug not supported, Guest memory is greater than the configured maxGuest memory"
    ),
    Reason.HOTPLUG_UNAVAILABLE: (
        "memory updated in template spec. Memory-hotplug is not available for this VM configuration"
    ),
    Reason.HOTPLUG_FAILED: "the hotplug failed; the change takes effect at the next restart",
    Reason.CLUSTER_DEFAULT_CHANGED: (
        "a cluster-wide default changed; the running guest keeps the old value until the next restart"
    ),
    Reason.CDROM_REMOVED: "a non-live-updatable field was changed in the template spec",
    Reason.INTERFACE_REMOVED: (
        "a non-live-updatable field was changed in the template spec: an interface can only be "
        "hot-unplugged by setting its state to absent"
    ),
    Reason.WAITING_FOR_RESTART: ("live-updatable, but no change is propagated while a restart is required"),
    Reason.INSUFFICIENT_NODE_RESOURCES: "the VMI's node cannot hold the change",
    # Upstream writes the change into the VMI and says nothing; it "will only take effect on next
    # migration, the change alone will not trigger one".
    Reason.PLACEMENT_VIOLATED: (
        "the VMI's node no longer matches its nodeSelector/affinity/tolerations; "
        "the change takes effect at the next migration"
    ),
}

# Upstream's own text for a failed memory hotplug; a failed CPU, disk or NIC hotplug has none upstream.
MEMORY_HOTPLUG_FAILED = (
    "memory updated in template spec. Memory-hotplug failed and is not available for this VM configuration"
)
