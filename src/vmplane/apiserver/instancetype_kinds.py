"""The four ``instancetype.kubevirt.io/v1beta1`` kinds as the API serves them: names, scope, short
names as upstream's CRDs, ``kubectl get`` columns, and their admitter.

Admission decodes with ``api.instancetype`` and refuses every upstream field vmplane cannot honour
by name (``unsupported_causes``). Editing an instance type never changes a VM already using it: the
VM controller snapshots what it uses into a ControllerRevision (``controller/instancetypes.py``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from vmplane.api.decoding import FieldValidation, decode
from vmplane.api.errors import InvalidObjectError
from vmplane.api.instancetype import (
    CLUSTER_INSTANCETYPE,
    CLUSTER_PREFERENCE,
    INSTANCETYPE,
    INSTANCETYPE_GROUP,
    INSTANCETYPE_VERSION,
    PREFERENCE,
    VirtualMachineInstancetype,
    VirtualMachinePreference,
    unsupported_causes,
)
from vmplane.api.validation import validate_metadata
from vmplane.apiserver.registry import Admitted, Operation, ResourceType, TableColumn
from vmplane.apiserver.registry import FieldValidation as FieldValidationName
from vmplane.apiserver.tables import AGE_COLUMN, NAME_COLUMN
from vmplane.store.base import JsonObject

__all__ = ["InstancetypeAdmitter", "instancetype_types"]


@dataclasses.dataclass(frozen=True)
class InstancetypeAdmitter:
    """Admission of instance types and preferences (``model`` says which; the kind is the object's)."""

    model: type[VirtualMachineInstancetype] | type[VirtualMachinePreference]
    kind: str

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidationName,
        dry_run: bool,
    ) -> Admitted:
        """Decode, then refuse the fields vmplane cannot honour and bad metadata."""
        decoded = decode(self.model, new, kind=self.kind, field_validation=FieldValidation(field_validation))
        value = decoded.value
        causes = validate_metadata(value.metadata) + unsupported_causes(value.spec)
        if causes:
            raise InvalidObjectError(self.kind, value.metadata.name or "", causes)
        wire = {**value.to_wire(), "kind": self.kind, "metadata": new.get("metadata", {})}
        return Admitted(object=wire, warnings=decoded.warnings)


def _cpu(obj: JsonObject, _now: datetime) -> int | None:
    guest = ((obj.get("spec") or {}).get("cpu") or {}).get("guest")
    return guest if isinstance(guest, int) else None


def _memory(obj: JsonObject, _now: datetime) -> str:
    return str(((obj.get("spec") or {}).get("memory") or {}).get("guest", ""))


_SIZE_COLUMNS = (
    TableColumn(name="CPU", cell=_cpu, type="integer", description="vCPUs given to the guest"),
    TableColumn(name="Memory", cell=_memory, description="Memory given to the guest"),
)


def _kind(
    kind: str, plural: str, short_names: tuple[str, ...], *, namespaced: bool, schema: JsonObject, sized: bool
) -> ResourceType:
    model: type[VirtualMachineInstancetype] | type[VirtualMachinePreference] = (
        VirtualMachineInstancetype if sized else VirtualMachinePreference
    )
    what = "the CPU and memory a VM gets" if sized else "defaults for what a VM leaves unset"
    scope = "cluster-wide" if not namespaced else "in one namespace"
    return ResourceType(
        group=INSTANCETYPE_GROUP,
        version=INSTANCETYPE_VERSION,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short_names,
        has_status_subresource=False,
        schema=schema,
        columns=(NAME_COLUMN, *(_SIZE_COLUMNS if sized else ()), AGE_COLUMN),
        admitter=InstancetypeAdmitter(model, kind),
        description=f"{kind} ({scope}): {what}, referenced from a VirtualMachine's "
        + ("spec.instancetype." if sized else "spec.preference."),
    )


def instancetype_types(
    instancetype_schema: JsonObject, preference_schema: JsonObject
) -> tuple[ResourceType, ...]:
    """The registrations of the four kinds, with the schemas of their pydantic models."""
    return (
        _kind(
            INSTANCETYPE,
            "virtualmachineinstancetypes",
            ("vminstancetype", "vminstancetypes", "vmf", "vmfs"),
            namespaced=True,
            schema=instancetype_schema,
            sized=True,
        ),
        _kind(
            CLUSTER_INSTANCETYPE,
            "virtualmachineclusterinstancetypes",
            ("vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"),
            namespaced=False,
            schema=instancetype_schema,
            sized=True,
        ),
        _kind(
            PREFERENCE,
            "virtualmachinepreferences",
            ("vmpref", "vmprefs", "vmp", "vmps"),
            namespaced=True,
            schema=preference_schema,
            sized=False,
        ),
        _kind(
            CLUSTER_PREFERENCE,
            "virtualmachineclusterpreferences",
            ("vmcpref", "vmcprefs", "vmcp", "vmcps"),
            namespaced=False,
            schema=preference_schema,
            sized=False,
        ),
    )
