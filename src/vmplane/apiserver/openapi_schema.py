"""Pydantic's JSON Schema, rewritten the way Kubernetes publishes OpenAPI, with upstream's prose.

Pydantic writes an optional field as ``anyOf: [X, {type: null}]`` with ``default: null`` and a
``title``; ``kubectl explain`` cannot follow ``anyOf``, so a field reads as an empty ``<Object>``.
Kubernetes writes the type itself (``$ref`` wrapped in ``allOf`` in v3 so a description can sit
beside it, bare in v2) and marks nothing as nullable: absent is the default. ``const`` (a Literal
with one value) becomes a one-value ``enum``, which OpenAPI 3.0 has and ``const`` is not.

Descriptions: KubeVirt's own (``upstream_descriptions.json``, extracted from KubeVirt's published
OpenAPI document by ``scripts/upstream_descriptions.py``), then vmplane's for what upstream does not
describe or vmplane adds (``VMPLANE_DESCRIPTIONS``), then the model's docstring for a field that
refers to a model.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from vmplane.store.base import JsonObject

__all__ = ["QUANTITY", "VMPLANE_DESCRIPTIONS", "kubernetes_schema", "quantity_schema"]

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_DESCRIPTION = (
    "Quantity is a fixed-point representation of a number, as Kubernetes writes resource amounts: "
    "an integer or a string such as 1Gi, 512Mi, 500m or 1e3."
)


def quantity_schema(*, v3: bool) -> JsonObject:
    """Kubernetes' shared ``Quantity`` definition: a string in v2, a string or number in v3."""
    if v3:
        return {"description": _QUANTITY_DESCRIPTION, "oneOf": [{"type": "string"}, {"type": "number"}]}
    return {"description": _QUANTITY_DESCRIPTION, "type": "string"}


_CONDITION = {
    "type": "Type of the condition, e.g. Ready or RestartRequired.",
    "status": "Status of the condition: True, False or Unknown.",
    "reason": "A machine-readable, CamelCase reason for the condition's last transition.",
    "message": "A human-readable message about the last transition.",
    "lastTransitionTime": "When the condition last changed from one status to another.",
    "lastProbeTime": "When the condition was last probed.",
    "observedGeneration": "The metadata.generation the condition was set for.",
}
_METADATA = "Standard object's metadata."

#: Field descriptions vmplane writes itself: fields upstream leaves undescribed, and vmplane's own.
VMPLANE_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Condition": _CONDITION,
    "PendingChange": {
        "": "A difference between the running guest and the VM that waits for a restart (vmplane).",
        "path": "The field that differs, as a path into the VM (list items addressed by name).",
        "running": "The value the running guest has; absent when the field is absent there.",
        "desired": "The value the VM asks for; absent when the field was removed.",
        "reason": "Why the change waits: NonLiveUpdatableChange, StagedByStrategy, WaitingForRestart, ...",
        "message": "A human-readable explanation of the reason.",
        "source": "Where the desired value comes from: the VM template, the cluster's defaults, the "
        "instance type or the preference.",
    },
    "VirtualMachineStatus": {
        "pendingChanges": (
            "Every change that waits for a restart (or, for a placement the VMI's node no longer "
            "matches, a migration), with running and desired values (vmplane)."
        ),
        "instancetypeRef": "The instance type the VM uses and the ControllerRevision snapshot of it.",
        "preferenceRef": "The preference the VM uses and the ControllerRevision snapshot of it.",
    },
    "VirtualMachineSpec": {
        "instancetype": "The (cluster) instance type giving the VM its CPU and memory.",
        "preference": "The (cluster) preference filling in what the VM's template leaves unset.",
    },
    "InstancetypeMatcher": {
        "": "Refers to an instance type or preference.",
        "name": "The name of the instance type or preference.",
        "kind": "Its kind, namespaced or cluster-wide (default: the cluster-wide kind).",
        "revisionName": "A ControllerRevision snapshot to use instead of the live object.",
        "inferFromVolume": "Upstream's: infer the reference from a volume (not honoured by vmplane).",
        "inferFromVolumeFailurePolicy": "Upstream's: what to do when inference fails (not honoured).",
    },
    "InstancetypeStatusRef": {
        "kind": "The kind of the instance type or preference in use.",
        "name": "Its name.",
        "controllerRevisionRef": "The ControllerRevision holding the snapshot the VM uses.",
    },
    "ControllerRevisionRef": {"name": "The name of the ControllerRevision."},
    "VirtualMachineTemplate": {"metadata": _METADATA, "spec": "The VMI spec the VM's guests boot from."},
    "VirtualMachine": {"metadata": _METADATA},
    "VirtualMachineInstance": {"metadata": _METADATA},
    "Interface": {
        "masquerade": "Connect the guest through NAT on the pod network (masquerade binding).",
        "bridge": "Connect the guest to the network through a bridge (bridge binding).",
        "sriov": "Pass an SR-IOV virtual function through to the guest.",
    },
    "Network": {
        "pod": "The default pod network.",
        "multus": "A secondary network attached through Multus, named by a NetworkAttachmentDefinition.",
    },
    "ArchConfiguration": {
        "machineType": "The default machine type of VMs of this architecture.",
        "ovmfPath": "Where the UEFI firmware files of this architecture are.",
        "emulatedMachines": "The machine types VMs of this architecture may ask for (glob patterns).",
    },
    "ArchitectureConfiguration": {
        "amd64": "Defaults for amd64 VMs.",
        "arm64": "Defaults for arm64 VMs.",
        "ppc64le": "Deprecated: ppc64le architecture is no longer supported.",
        "s390x": "Defaults for s390x VMs.",
        "defaultArchitecture": "The architecture of a VM that names none.",
    },
    "KubeVirtConfiguration": {
        "developerConfiguration": "Feature gates and developer settings.",
        "cpuModel": "The CPU model of VMs that name none.",
        "architectureConfiguration": "Per-architecture defaults: machine types, firmware.",
    },
    "KubeVirtSpec": {"": "The desired state of the KubeVirt installation."},
    "KubeVirtStatus": {
        "phase": "The installation's phase, e.g. Deployed.",
        "conditions": "Available, Progressing and Degraded.",
        "observedGeneration": "The metadata.generation the status describes.",
    },
    "KubeVirt": {
        "metadata": _METADATA,
        "spec": "The installation's configuration.",
        "status": "The installation's observed state.",
    },
    "ControllerRevision": {
        "": "ControllerRevision implements an immutable snapshot of state data; vmplane keeps the VM "
        "spec a guest booted from in one.",
        "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
        "kind": "Kind is a string value representing the REST resource this object represents.",
        "metadata": _METADATA,
        "data": "Data is the serialized representation of the state.",
        "revision": "Revision indicates the revision of the state represented by Data.",
    },
}


@cache
def _upstream() -> dict[str, dict[str, str]]:
    text = resources.files("vmplane.apiserver").joinpath("upstream_descriptions.json").read_text()
    definitions: dict[str, dict[str, str]] = json.loads(text)["definitions"]
    return definitions


def _description(definition: str, field: str) -> str | None:
    for table in (_upstream(), VMPLANE_DESCRIPTIONS):
        found = table.get(definition, {}).get(field)
        if found:
            return found
    return None


def _plain(text: str) -> str:
    """Docstrings use reStructuredText literals; explain prints text as it is."""
    return text.replace("``", "`")


def _type_of(node: JsonObject, ref_root: str) -> JsonObject:
    """The non-null alternative of pydantic's ``anyOf: [X, {type: null}]``, else the node.

    A quantity (``x-kubernetes-int-or-string`` from ``api.quantity``) becomes a ``$ref`` to the shared
    ``Quantity`` definition, as Kubernetes writes it.
    """
    if node.get("x-kubernetes-int-or-string") and "pattern" in node:
        return {"$ref": ref_root + QUANTITY}
    alternatives = node.get("anyOf")
    if isinstance(alternatives, list):
        concrete = [a for a in alternatives if a != {"type": "null"}]
        if len(concrete) == 1:
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            return _type_of({**concrete[0], **rest}, ref_root)
    return node


def _property(
    node: JsonObject, description: str | None, *, v3: bool, ref_root: str, models: dict[str, str]
) -> JsonObject:
    out: JsonObject = _clean(_type_of(node, ref_root), ref_root=ref_root)
    ref = out.get("$ref")
    if isinstance(ref, str):
        description = description or models.get(ref.removeprefix(ref_root))
        out = {"allOf": [{"$ref": ref}]} if v3 else {"$ref": ref}
    if description:
        out["description"] = _plain(description)
    return out


def _clean(node: Any, *, ref_root: str) -> Any:
    """Drop pydantic's titles and null defaults, and turn ``const`` into ``enum``, recursively."""
    if isinstance(node, list):
        return [_clean(v, ref_root=ref_root) for v in node]
    if not isinstance(node, dict):
        return node
    out: JsonObject = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _clean(_type_of(value, ref_root), ref_root=ref_root)
            continue
        out[key] = _clean(value, ref_root=ref_root)
    return out


def kubernetes_schema(
    definition: str, schema: JsonObject, *, v3: bool, ref_root: str, models: dict[str, str]
) -> JsonObject:
    """``schema`` (pydantic's, for the model named ``definition``) as Kubernetes would publish it.

    ``models``: each definition name in the document to its model's description, used for a field
    that refers to the model and has no description of its own.
    """
    out: JsonObject = _clean({k: v for k, v in schema.items() if k != "properties"}, ref_root=ref_root)
    own = _description(definition, "") or schema.get("description")
    if own:
        out["description"] = _plain(own)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {
            name: _property(
                value,
                _description(definition, name) or value.get("description"),
                v3=v3,
                ref_root=ref_root,
                models=models,
            )
            for name, value in properties.items()
        }
    return out
