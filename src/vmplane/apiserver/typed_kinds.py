"""The kubevirt.io/v1 kinds with their typed schemas and admission.

Admission decodes with the pydantic models (unknown fields per ``fieldValidation``), validates with
``api.validation`` under the cluster configuration, and, for a dry run of a VM write, projects the
status the change would cause: the pending changes and ``RestartRequired`` against the running VMI.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from vmplane.api.decoding import FieldValidation, decode
from vmplane.api.errors import CauseType, FieldCause, InvalidObjectError
from vmplane.api.instancetype import VirtualMachineInstancetype, VirtualMachinePreference
from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration
from vmplane.api.kubevirt_defaults import default_kubevirt
from vmplane.api.maintenance import MaintenanceWindow, window_causes
from vmplane.api.migration import VirtualMachineInstanceMigration
from vmplane.api.model import WireModel
from vmplane.api.ownership import MACHINE_FINALIZER, controller_of
from vmplane.api.spec_rules import spec_field_causes
from vmplane.api.timestamps import timestamp
from vmplane.api.validation import validate_metadata, validate_vm, validate_vmi_spec, volume_path_causes
from vmplane.api.vm import VirtualMachine, VirtualMachineStatus
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.apiserver.instancetype_kinds import instancetype_types
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.maintenance_kind import maintenance_window_type
from vmplane.apiserver.migration_kind import MigrationAdmitter, migration_type
from vmplane.apiserver.registry import Admitted, Operation, Registry
from vmplane.apiserver.registry import FieldValidation as FieldValidationName
from vmplane.rollout.placement import placement_after
from vmplane.rollout.plan import plan, vm_path
from vmplane.rollout.vm_effective import vm_effective
from vmplane.rollout.vm_status import Observation, derive_status
from vmplane.store.base import JsonObject

# On a dry-run response only (never stored): the live changes the write would apply, as JSON.
LIVE_CHANGES_ANNOTATION = "vmplane.io/dry-run-live-changes"

__all__ = [
    "LIVE_CHANGES_ANNOTATION",
    "VMI_UPDATE_RESTRICTED",
    "ClusterView",
    "KubeVirtAdmitter",
    "MaintenanceWindowAdmitter",
    "VMAdmitter",
    "VMIAdmitter",
    "typed_registry",
]


class ClusterView(Protocol):
    """What admission reads of the cluster, synchronously (from the controllers' caches)."""

    def configuration(self) -> KubeVirtConfiguration:
        """The KubeVirt configuration in force."""
        ...

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        """The VMI of that name, if one exists."""
        ...

    def lookup(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        """An instance type, preference or ControllerRevision by store resource ("" namespace: cluster)."""
        ...

    def migrations(self, namespace: str) -> list[JsonObject]:
        """The VirtualMachineInstanceMigrations of the namespace."""
        ...

    def node(self, name: str) -> JsonObject | None:
        """The Node of that name, if one exists."""
        ...


def _schema(model: type[WireModel]) -> JsonObject:
    return model.model_json_schema(by_alias=True, mode="validation")


def _admissible(
    model: type[Any],
    new: JsonObject,
    field_validation: FieldValidationName,
    causes_of: Callable[[Any], list[FieldCause]],
) -> Any:
    """``new`` decoded as ``model`` (a ``Decoded``), raising InvalidObjectError with every cause."""
    kind = model.__name__
    decoded = decode(model, new, kind=kind, field_validation=FieldValidation(field_validation))
    causes = causes_of(decoded.value)
    if causes:
        raise InvalidObjectError(kind, decoded.value.metadata.name or "", causes)
    return decoded


def _with_metadata_of(wire: JsonObject, new: JsonObject) -> JsonObject:
    # The typed ObjectMeta is lossless for what we model; keep the client's metadata verbatim
    # anyway so that fields the store owns reach it exactly as sent.
    return {**wire, "metadata": new.get("metadata", wire.get("metadata"))}


def _merged(first: list[FieldCause], second: list[FieldCause]) -> list[FieldCause]:
    """Both lists of causes, each cause once."""
    return first + [cause for cause in second if cause not in first]


def _with_status_of(vm: VirtualMachine, old: JsonObject | None) -> VirtualMachine:
    """``vm`` with the stored status (which snapshots it uses), not whatever the client sent."""
    previous = VirtualMachine.model_validate(old).status if old is not None else None
    return vm.model_copy(update={"status": previous})


@dataclasses.dataclass(frozen=True)
class VMAdmitter:
    """Admission of VirtualMachines, with the dry-run status projection.

    ``allowed_host_dirs``: where ``hostDisk`` paths may point on this host (None: not checked).
    ``machine_types``: the machine types this host's QEMU offers (None: only their q35 shape is checked).
    """

    cluster: ClusterView
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    allowed_host_dirs: tuple[str, ...] | None = None
    machine_types: tuple[str, ...] | None = None

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Decode, validate, and for a dry run project the resulting status."""
        config = self.cluster.configuration()
        decoded = _admissible(
            VirtualMachine,
            new,
            field_validation,
            lambda vm: _merged(
                validate_vm(
                    vm, config, allowed_host_dirs=self.allowed_host_dirs, machine_types=self.machine_types
                ),
                self._sizing_causes(_with_status_of(vm, old), config),
            ),
        )
        vm: VirtualMachine = decoded.value
        wire = _with_metadata_of(vm.to_wire(), new)
        if dry_run:
            status, live = self.project(vm, config, old)
            wire["status"] = status.to_wire()
            if live:
                annotations = dict(wire["metadata"].get("annotations") or {})
                annotations[LIVE_CHANGES_ANNOTATION] = json.dumps(live, separators=(",", ":"))
                wire["metadata"] = {**wire["metadata"], "annotations": annotations}
        elif operation == "CREATE":
            wire.pop("status", None)
        return Admitted(object=wire, warnings=decoded.warnings)

    def _sizing_causes(self, vm: VirtualMachine, config: KubeVirtConfiguration) -> list[FieldCause]:
        """Why the VM's instance type and preference do not apply, and what of the values they give
        QEMU could not take (a preference's machine type, an instance type's CPU model)."""
        sized = vm_effective(vm, config, self.cluster.lookup)
        if sized.effective is None or not sized.resolution.referenced:
            return sized.causes
        return spec_field_causes(
            sized.effective.spec, prefix="spec.template.spec", machine_types=self.machine_types
        )

    def project(
        self, vm: VirtualMachine, config: KubeVirtConfiguration, old: JsonObject | None
    ) -> tuple[VirtualMachineStatus, list[JsonObject]]:
        """The status the controller would write for ``vm`` against the VMI running now, and the
        live changes it would apply."""
        vm = _with_status_of(vm, old)
        raw_vmi = self.cluster.vmi(vm.metadata.namespace or "default", vm.metadata.name or "")
        vmi = VirtualMachineInstance.model_validate(raw_vmi) if raw_vmi is not None else None
        rollout = None
        desired = vm_effective(vm, config, self.cluster.lookup).effective
        if vmi is not None and not vmi.metadata.deletion_timestamp and desired is not None:
            rollout = plan(running=vmi.spec, desired=desired, observed=vmi.status, config=config)
        now = timestamp(self.clock())
        live = [
            {"path": vm_path(c.path), "running": c.running, "desired": c.desired, "kind": c.kind.value}
            for c in (rollout.live if rollout is not None else ())
        ]
        placement = None
        if vmi is not None and rollout is not None:
            node_name = vmi.status.node_name if vmi.status is not None else None
            node = self.cluster.node(node_name) if node_name else None
            placement = placement_after(vmi=vmi, rollout=rollout, node=node, desired=desired, config=config)
        observation = Observation(vmi, rollout, crash_loop=False, now=now, placement=placement)
        return derive_status(vm, observation), live


# Upstream's VMI update admitter (vmi-update-admitter.go) refuses every spec change not made by
# KubeVirt's own service account; vmplane's controllers write through the store, not this API.
VMI_UPDATE_RESTRICTED = "update of VMI object is restricted"


def _standalone_spec_change(vmi: VirtualMachineInstance, old: JsonObject | None) -> list[FieldCause]:
    """A user's change to the spec of a VMI that no VM controls: refused, with upstream's message.

    A VM's VMI is left to the VM's rollout (its spec is the VM controller's to write).
    """
    if old is None or controller_of(old.get("metadata") or {}) is not None:
        return []
    if vmi.spec == VirtualMachineInstance.model_validate(old).spec:
        return []
    return [FieldCause("spec", VMI_UPDATE_RESTRICTED, CauseType.FIELD_VALUE_NOT_SUPPORTED)]


def _with_machine_finalizer(wire: JsonObject) -> JsonObject:
    """A new VMI holds the agent's finalizer from the start, so deleting it always stops its guest."""
    metadata = wire.get("metadata") or {}
    finalizers = list(metadata.get("finalizers") or [])
    if MACHINE_FINALIZER in finalizers:
        return wire
    return {**wire, "metadata": {**metadata, "finalizers": [*finalizers, MACHINE_FINALIZER]}}


@dataclasses.dataclass(frozen=True)
class VMIAdmitter:
    """Admission of VirtualMachineInstances (``allowed_host_dirs`` and ``machine_types`` as for VMs).

    A created VMI gets the agent's finalizer; the spec of a VMI no VM controls cannot be changed.
    """

    allowed_host_dirs: tuple[str, ...] | None = None
    machine_types: tuple[str, ...] | None = None

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Decode and validate the spec's structure."""
        decoded = _admissible(
            VirtualMachineInstance,
            new,
            field_validation,
            lambda vmi: validate_metadata(vmi.metadata)
            + validate_vmi_spec(vmi.spec, prefix="spec")
            + volume_path_causes(vmi.spec, prefix="spec", allowed_host_dirs=self.allowed_host_dirs)
            + spec_field_causes(vmi.spec, prefix="spec", machine_types=self.machine_types)
            + _standalone_spec_change(vmi, old),
        )
        wire = _with_metadata_of(decoded.value.to_wire(), new)
        if operation == "CREATE":
            wire = _with_machine_finalizer(wire)
        return Admitted(object=wire, warnings=decoded.warnings)


@dataclasses.dataclass(frozen=True)
class KubeVirtAdmitter:
    """Admission of the KubeVirt configuration object."""

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Default as upstream (``api.kubevirt_defaults``), decode (the strategy must be ``Stage`` or
        ``LiveUpdate``) and check metadata."""
        decoded = _admissible(
            KubeVirt,
            default_kubevirt(new),
            field_validation,
            lambda kubevirt: validate_metadata(kubevirt.metadata),
        )
        return Admitted(object=_with_metadata_of(decoded.value.to_wire(), new), warnings=decoded.warnings)


@dataclasses.dataclass(frozen=True)
class MaintenanceWindowAdmitter:
    """Admission of MaintenanceWindows: decode, then ``api.maintenance.window_causes``."""

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Decode and validate schedule, selectors, ``maxUnavailable``, priority label and gate."""
        decoded = _admissible(
            MaintenanceWindow,
            new,
            field_validation,
            lambda window: validate_metadata(window.metadata) + window_causes(window),
        )
        wire = _with_metadata_of(decoded.value.to_wire(), new)
        if operation == "CREATE":
            wire.pop("status", None)
        return Admitted(object=wire, warnings=decoded.warnings)


def typed_registry(
    cluster: ClusterView,
    *,
    allowed_host_dirs: tuple[str, ...] | None = None,
    machine_types: tuple[str, ...] | None = None,
) -> Registry:
    """The default registry with the kubevirt.io/v1 kinds typed and admitted (migrations too), vmplane.io's
    MaintenanceWindow and the instancetype.kubevirt.io kinds.

    ``allowed_host_dirs``: the directories ``hostDisk`` paths must lie under (None: not checked).
    ``machine_types``: the machine types ``domain.machine.type`` may name (None: any q35 name).
    """
    registry = default_registry()
    vms = VMAdmitter(cluster, allowed_host_dirs=allowed_host_dirs, machine_types=machine_types)
    vmis = VMIAdmitter(allowed_host_dirs=allowed_host_dirs, machine_types=machine_types)
    typed = (
        ("virtualmachines", VirtualMachine, vms),
        ("virtualmachineinstances", VirtualMachineInstance, vmis),
        ("kubevirts", KubeVirt, KubeVirtAdmitter()),
    )
    for plural, model, admitter in typed:
        current = registry.lookup("kubevirt.io", "v1", plural)
        assert current is not None
        registry.register(dataclasses.replace(current, schema=_schema(model), admitter=admitter))
    registry.register(maintenance_window_type(_schema(MaintenanceWindow), MaintenanceWindowAdmitter()))
    registry.register(migration_type(_schema(VirtualMachineInstanceMigration), MigrationAdmitter(cluster)))
    for resource_type in instancetype_types(
        _schema(VirtualMachineInstancetype), _schema(VirtualMachinePreference)
    ):
        registry.register(resource_type)
    return registry
