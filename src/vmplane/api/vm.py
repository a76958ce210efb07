"""``VirtualMachine`` (``kubevirt.io/v1``): the desired state of a guest across restarts."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field

from vmplane.api.meta import Condition, ObjectMeta
from vmplane.api.model import WireModel
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = [
    "ChangeSource",
    "PendingChange",
    "PrintableStatus",
    "RunStrategy",
    "StateChangeRequest",
    "VirtualMachine",
    "VirtualMachineSpec",
    "VirtualMachineStatus",
    "VirtualMachineTemplate",
]


class RunStrategy(str, Enum):
    """``spec.runStrategy``."""

    ALWAYS = "Always"
    HALTED = "Halted"
    MANUAL = "Manual"
    RERUN_ON_FAILURE = "RerunOnFailure"
    ONCE = "Once"


class TemplateMeta(WireModel):
    """``spec.template.metadata``: labels and annotations only."""

    name: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: str | None = None


class VirtualMachineTemplate(WireModel):
    """``spec.template``: the VMI to create."""

    metadata: TemplateMeta | None = None
    spec: VirtualMachineInstanceSpec = Field(default_factory=VirtualMachineInstanceSpec)


class VirtualMachineSpec(WireModel):
    """``spec`` of a VM."""

    running: bool | None = None
    run_strategy: RunStrategy | None = None
    template: VirtualMachineTemplate
    data_volume_templates: list[dict[str, Any]] | None = None
    update_volumes_strategy: Literal["Replacement", "Migration"] | None = None


class ChangeSource(str, Enum):
    """Where a pending change comes from."""

    TEMPLATE = "template"
    CLUSTER = "cluster"


class PendingChange(WireModel):
    """A difference between the running guest and the VM that waits for a restart."""

    path: str
    running: Any = None
    desired: Any = None
    reason: str
    message: str
    source: ChangeSource = ChangeSource.TEMPLATE


class PrintableStatus(str, Enum):
    """``status.printableStatus``, as KubeVirt prints it in ``kubectl get vm``."""

    STOPPED = "Stopped"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPING = "Stopping"
    TERMINATING = "Terminating"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    MIGRATING = "Migrating"
    UNKNOWN = "Unknown"
    ERROR_UNSCHEDULABLE = "ErrorUnschedulable"


class StateChangeRequest(WireModel):
    """A pending start/stop request (``status.stateChangeRequests``)."""

    action: Literal["Start", "Stop"]
    uid: str | None = None
    data: dict[str, str] | None = None


class VirtualMachineStatus(WireModel):
    """``status`` of a VM."""

    created: bool | None = None
    ready: bool | None = None
    printable_status: PrintableStatus | None = None
    run_strategy: RunStrategy | None = None
    conditions: list[Condition] | None = None
    pending_changes: list[PendingChange] | None = None
    observed_generation: int | None = None
    desired_generation: int | None = None
    state_change_requests: list[StateChangeRequest] | None = None
    start_failure: dict[str, Any] | None = None

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions or () if c.type == type_), None)


class VirtualMachine(WireModel):
    """A VM: the guest's desired state and how it runs."""

    api_version: Literal["kubevirt.io/v1"] = "kubevirt.io/v1"
    kind: Literal["VirtualMachine"] = "VirtualMachine"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: VirtualMachineSpec
    status: VirtualMachineStatus | None = None
