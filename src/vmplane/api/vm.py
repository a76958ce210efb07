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
    "ControllerRevisionRef",
    "InstancetypeMatcher",
    "InstancetypeStatusRef",
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


class InstancetypeMatcher(WireModel):
    """``spec.instancetype`` / ``spec.preference``: which (cluster) instance type or preference sizes the VM.

    ``kind`` defaults to the cluster-scoped kind, as upstream; ``revisionName`` pins a stored snapshot.
    """

    name: str = Field(min_length=1)
    kind: str | None = None
    revision_name: str | None = None
    infer_from_volume: str | None = None
    infer_from_volume_failure_policy: str | None = None


class ControllerRevisionRef(WireModel):
    """``status.instancetypeRef.controllerRevisionRef``: the snapshot the VM uses."""

    name: str


class InstancetypeStatusRef(WireModel):
    """``status.instancetypeRef`` / ``status.preferenceRef``, in upstream's shape."""

    kind: str
    name: str
    controller_revision_ref: ControllerRevisionRef | None = None


class VirtualMachineSpec(WireModel):
    """``spec`` of a VM."""

    running: bool | None = None
    instancetype: InstancetypeMatcher | None = None
    preference: InstancetypeMatcher | None = None
    run_strategy: RunStrategy | None = None
    template: VirtualMachineTemplate
    data_volume_templates: list[dict[str, Any]] | None = None
    update_volumes_strategy: Literal["Replacement", "Migration"] | None = None


class ChangeSource(str, Enum):
    """Where a pending change comes from."""

    TEMPLATE = "template"
    CLUSTER = "cluster"
    INSTANCETYPE = "instancetype"
    PREFERENCE = "preference"


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
    instancetype_ref: InstancetypeStatusRef | None = None
    preference_ref: InstancetypeStatusRef | None = None

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
