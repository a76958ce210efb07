"""``VirtualMachineInstanceMigration`` (``kubevirt.io/v1``, ``vmim``) as the API serves it: its
registration with upstream's printer columns (Phase, VMI), and admission as upstream's webhooks.

Creation (upstream's ``migration-create-admitter``) needs a VMI that exists, is not final, is not
``LiveMigratable=False`` and has no migration in flight; the object is labelled with its VMI
(``kubevirt.io/vmi-name``) as upstream's mutating webhook does. An update may not change the spec,
nor the label while the migration is in flight (``migration-update-admitter``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Protocol

from vmplane.api.decoding import FieldValidation, decode
from vmplane.api.errors import CauseType, FieldCause, InvalidObjectError
from vmplane.api.migratable import LIVE_MIGRATABLE
from vmplane.api.migration import (
    ACTIVE_PHASES,
    MIGRATION_SELECTOR_LABEL,
    MigrationPhase,
    VirtualMachineInstanceMigration,
    migration_spec_causes,
)
from vmplane.api.validation import validate_metadata
from vmplane.api.vmi import VirtualMachineInstance, VMIPhase
from vmplane.apiserver.registry import Admitted, Operation, ResourceType, TableColumn
from vmplane.apiserver.registry import FieldValidation as FieldValidationName
from vmplane.apiserver.tables import NAME_COLUMN
from vmplane.store.base import JsonObject

__all__ = ["MigrationAdmitter", "MigrationView", "migration_type"]

_KIND = "VirtualMachineInstanceMigration"
_FINAL = frozenset({VMIPhase.SUCCEEDED, VMIPhase.FAILED})


class MigrationView(Protocol):
    """What migration admission reads of the cluster (the API server's informers)."""

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        """The VMI of that name, if one exists."""
        ...

    def migrations(self, namespace: str) -> list[JsonObject]:
        """The migration objects of the namespace."""
        ...


def _phase(obj: JsonObject, _now: datetime) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def _vmi_name(obj: JsonObject, _now: datetime) -> str:
    return str((obj.get("spec") or {}).get("vmiName", ""))


def _vmi_causes(vmi: JsonObject | None, namespace: str, name: str) -> list[FieldCause]:
    """Why the VMI cannot be migrated now (upstream's messages)."""
    field = "spec.vmiName"
    if vmi is None:
        return [
            FieldCause(field, f'the VMI "{namespace}/{name}" does not exist', CauseType.FIELD_VALUE_INVALID)
        ]
    parsed = VirtualMachineInstance.model_validate(vmi)
    status = parsed.status
    if status is not None and status.phase in _FINAL:
        return [FieldCause(field, "Cannot migrate VMI in finalized state.")]
    live = status.condition(LIVE_MIGRATABLE) if status is not None else None
    if live is not None and live.status == "False":
        return [FieldCause(field, f"Cannot migrate VMI, Reason: {live.reason}, Message: {live.message}")]
    return []


def _in_flight(migrations: list[JsonObject], vmi_name: str) -> list[FieldCause]:
    for other in migrations:
        parsed = VirtualMachineInstanceMigration.model_validate(other)
        if parsed.spec.vmi_name != vmi_name:
            continue
        phase = parsed.status.phase if parsed.status is not None else None
        if phase is None or phase in ACTIVE_PHASES:
            return [
                FieldCause(
                    "spec.vmiName",
                    f"in-flight migration detected. Active migration job ({parsed.metadata.uid}) is "
                    f"currently already in progress for VMI {vmi_name}.",
                )
            ]
    return []


def _update_causes(new: VirtualMachineInstanceMigration, old: JsonObject) -> list[FieldCause]:
    before = VirtualMachineInstanceMigration.model_validate(old)
    causes = []
    if new.spec != before.spec:
        causes.append(
            FieldCause(
                "spec", "update of Migration object's spec is restricted", CauseType.FIELD_VALUE_FORBIDDEN
            )
        )
    phase = before.status.phase if before.status is not None else None
    old_label = (before.metadata.labels or {}).get(MIGRATION_SELECTOR_LABEL)
    new_label = (new.metadata.labels or {}).get(MIGRATION_SELECTOR_LABEL)
    if old_label is not None and (phase is None or phase in ACTIVE_PHASES) and new_label != old_label:
        message = (
            "selector label can't be removed from an in-flight migration"
            if new_label is None
            else "selector label can't be modified on an in-flight migration"
        )
        causes.append(FieldCause("metadata.labels", message, CauseType.FIELD_VALUE_FORBIDDEN))
    return causes


def _labelled(wire: JsonObject, vmi_name: str) -> JsonObject:
    metadata = dict(wire.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), MIGRATION_SELECTOR_LABEL: vmi_name}
    return {**wire, "metadata": metadata}


@dataclasses.dataclass(frozen=True)
class MigrationAdmitter:
    """Admission of migration objects (see the module's docstring)."""

    cluster: MigrationView

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Decode, validate the spec, and on creation check the VMI and label the object with it."""
        decoded = decode(
            VirtualMachineInstanceMigration,
            new,
            kind=_KIND,
            field_validation=FieldValidation(field_validation),
        )
        migration: VirtualMachineInstanceMigration = decoded.value
        name = migration.metadata.name or migration.metadata.generate_name or ""
        causes = validate_metadata(migration.metadata) + migration_spec_causes(migration.spec)
        if not causes and operation == "CREATE":
            namespace, vmi_name = migration.metadata.namespace or "default", migration.spec.vmi_name or ""
            causes = _vmi_causes(self.cluster.vmi(namespace, vmi_name), namespace, vmi_name)
            causes = causes or _in_flight(self.cluster.migrations(namespace), vmi_name)
        elif not causes and old is not None:
            causes = _update_causes(migration, old)
        if causes:
            raise InvalidObjectError(_KIND, name, causes)
        wire = {**migration.to_wire(), "metadata": new.get("metadata", {})}
        if operation == "CREATE":
            wire.pop("status", None)
            wire = _labelled(wire, migration.spec.vmi_name or "")
        return Admitted(object=wire, warnings=decoded.warnings)


def migration_type(schema: JsonObject, admitter: MigrationAdmitter) -> ResourceType:
    """The kind's registration: upstream's names, short names and printer columns."""
    return ResourceType(
        group="kubevirt.io",
        version="v1",
        kind=_KIND,
        plural="virtualmachineinstancemigrations",
        singular="virtualmachineinstancemigration",
        short_names=("vmim", "vmims"),
        categories=("all",),
        schema=schema,
        columns=(
            NAME_COLUMN,
            TableColumn(name="Phase", cell=_phase, description="The current phase of VM instance migration"),
            # Upstream's CRD lists these two only, so kubectl shows no AGE for migrations.
            TableColumn(
                name="VMI", cell=_vmi_name, description="The name of the VMI to perform the migration on"
            ),
        ),
        admitter=admitter,
        field_selectors=("spec.vmiName", "status.phase"),
        description="VirtualMachineInstanceMigration represents the object tracking a VMI's migration "
        "to another host in the cluster",
    )


#: The phases ``kubectl get vmim`` can show, in order (for documentation and tests).
PHASES = tuple(p.value for p in MigrationPhase)
