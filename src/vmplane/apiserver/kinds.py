"""The kinds vmplane serves, with permissive schemas until the typed models register theirs.

``default_registry()`` is what ``vmplane serve`` uses; the typed kubevirt.io/v1 admitters and
schemas replace these registrations (``Registry.register`` replaces by group/version/plural).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from vmplane.apiserver.namespaces import NamespaceAdmitter
from vmplane.apiserver.node_columns import NODE_COLUMNS
from vmplane.apiserver.registry import Registry, ResourceType, TableColumn, permissive_schema
from vmplane.apiserver.tables import (
    AGE_COLUMN,
    NAME_COLUMN,
    condition_status,
    human_duration,
    parse_timestamp,
)
from vmplane.store.base import JsonObject

__all__ = ["default_registry"]


def _status(obj: JsonObject) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _first_ip(obj: JsonObject, _now: datetime) -> str:
    interfaces = _status(obj).get("interfaces") or []
    if interfaces and isinstance(interfaces[0], dict):
        return str(interfaces[0].get("ipAddress", ""))
    return ""


def _ready(obj: JsonObject, _now: datetime) -> str:
    return condition_status(obj, "Ready")


def _status_field(name: str) -> TableColumn:
    def cell(obj: JsonObject, _now: datetime) -> str:
        return str(_status(obj).get(name, ""))

    return TableColumn(name=name[0].upper() + name[1:], cell=cell)


def _last_seen(obj: JsonObject, now: datetime) -> str:
    stamp = parse_timestamp(obj.get("lastTimestamp") or obj.get("eventTime"))
    stamp = stamp or parse_timestamp(obj.get("metadata", {}).get("creationTimestamp"))
    return "<unknown>" if stamp is None else human_duration((now - stamp).total_seconds())


def _involved(obj: JsonObject, _now: datetime) -> str:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _spec_field(name: str) -> Callable[[JsonObject, datetime], str]:
    def cell(obj: JsonObject, _now: datetime) -> str:
        spec = obj.get("spec")
        return str(spec.get(name, "")) if isinstance(spec, dict) else ""

    return cell


def _top(name: str) -> TableColumn:
    return TableColumn(name=name[0].upper() + name[1:], cell=lambda obj, _now: str(obj.get(name, "")))


_KUBEVIRT = "kubevirt.io"
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def default_registry() -> Registry:
    """Every kind of docs/rollout.md §1 plus Namespace and Node, with pass-through admission."""
    vm_status = TableColumn(
        name="Status", cell=_status_field("printableStatus").cell, description="Human Readable Status"
    )
    ready = TableColumn(name="Ready", cell=_ready)
    return Registry(
        [
            ResourceType(
                group=_KUBEVIRT,
                version="v1",
                kind="VirtualMachine",
                plural="virtualmachines",
                singular="virtualmachine",
                short_names=("vm", "vms"),
                categories=("all",),
                schema=permissive_schema("VirtualMachine"),
                columns=(NAME_COLUMN, AGE_COLUMN, vm_status, ready),
                description="VirtualMachine handles the VirtualMachines that are not running or stopped.",
            ),
            ResourceType(
                group=_KUBEVIRT,
                version="v1",
                kind="VirtualMachineInstance",
                plural="virtualmachineinstances",
                singular="virtualmachineinstance",
                short_names=("vmi", "vmis"),
                categories=("all",),
                schema=permissive_schema("VirtualMachineInstance"),
                columns=(
                    NAME_COLUMN,
                    AGE_COLUMN,
                    _status_field("phase"),
                    TableColumn(name="IP", cell=_first_ip),
                    TableColumn(name="NodeName", cell=_status_field("nodeName").cell),
                    ready,
                ),
                # The node agent watches only its node's VMIs, as a kubelet its pods (spec.nodeName).
                field_selectors=("status.nodeName", "status.phase", "status.migrationState.targetNode"),
                # KubeVirt's VMI CRD has no status subresource: virt-controller creates a VMI with
                # its first status (phase, topology, revision name) in one write.
                status_on_create=True,
                description="VirtualMachineInstance is *the* VirtualMachineInstance Definition.",
            ),
            ResourceType(
                group=_KUBEVIRT,
                version="v1",
                kind="KubeVirt",
                plural="kubevirts",
                singular="kubevirt",
                short_names=("kv", "kvs"),
                categories=("all",),
                schema=permissive_schema("KubeVirt"),
                columns=(NAME_COLUMN, AGE_COLUMN, _status_field("phase")),
                description="KubeVirt represents the object deploying all KubeVirt resources.",
            ),
            ResourceType(
                group="apps",
                version="v1",
                kind="ControllerRevision",
                plural="controllerrevisions",
                singular="controllerrevision",
                has_status_subresource=False,
                schema=permissive_schema("ControllerRevision"),
                columns=(NAME_COLUMN, _top("revision"), AGE_COLUMN),
                allow_unconditional_update=True,
                description="ControllerRevision implements an immutable snapshot of state data.",
            ),
            ResourceType(
                group="",
                version="v1",
                kind="Event",
                plural="events",
                singular="event",
                short_names=("ev",),
                has_status_subresource=False,
                schema=permissive_schema("Event"),
                columns=(
                    TableColumn(name="Last Seen", cell=_last_seen),
                    _top("type"),
                    _top("reason"),
                    TableColumn(name="Object", cell=_involved),
                    _top("message"),
                ),
                field_selectors=_EVENT_FIELDS,
                allow_unconditional_update=True,
                description="Event is a report of an event somewhere in the cluster.",
            ),
            ResourceType(
                group="",
                version="v1",
                kind="Namespace",
                plural="namespaces",
                singular="namespace",
                namespaced=False,
                short_names=("ns",),
                schema=permissive_schema("Namespace"),
                columns=(NAME_COLUMN, _status_field("phase"), AGE_COLUMN),
                field_selectors=("status.phase",),
                allow_unconditional_update=True,
                admitter=NamespaceAdmitter(),
                description="Namespace provides a scope for Names.",
                name_rule="label",
            ),
            ResourceType(
                group="",
                version="v1",
                kind="Node",
                plural="nodes",
                singular="node",
                namespaced=False,
                short_names=("no",),
                schema=permissive_schema("Node"),
                columns=NODE_COLUMNS,
                allow_unconditional_update=True,
                description="Node is a worker node in vmplane.",
            ),
            ResourceType(
                group="coordination.k8s.io",
                version="v1",
                kind="Lease",
                plural="leases",
                singular="lease",
                has_status_subresource=False,
                schema=permissive_schema("Lease"),
                columns=(
                    NAME_COLUMN,
                    TableColumn(name="Holder", cell=_spec_field("holderIdentity")),
                    AGE_COLUMN,
                ),
                allow_unconditional_update=True,
                description="Lease defines a lease concept (node agents renew theirs in kube-node-lease).",
            ),
            ResourceType(
                group="",
                version="v1",
                kind="Pod",
                plural="pods",
                singular="pod",
                short_names=("po",),
                categories=("all",),
                schema=permissive_schema("Pod"),
                field_selectors=("spec.nodeName", "status.phase"),
                allow_unconditional_update=True,
                read_only=True,
                description="Pod: vmplane runs no pods, so this list is always empty (read-only, for "
                "clients such as kubectl describe node that ask).",
            ),
        ]
    )
