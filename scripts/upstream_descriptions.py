"""Extract field descriptions from KubeVirt's published OpenAPI document for vmplane's wire models.

vmplane's pydantic models carry the wire shape but not upstream's prose; ``kubectl explain`` should
read what KubeVirt users read. This script keeps only the descriptions of the definitions and fields
vmplane models, and writes them as data (``src/vmplane/apiserver/upstream_descriptions.json``).

Usage: python scripts/upstream_descriptions.py SWAGGER_JSON COMMIT > OUT, where OUT is
src/vmplane/apiserver/upstream_descriptions.json and SWAGGER_JSON is
``api/openapi-spec/swagger.json`` of kubevirt/kubevirt at COMMIT.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from vmplane.api.kubevirt import ControllerRevision, KubeVirt
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance

PREFIXES = ("v1.", "k8s.io.api.core.v1.", "k8s.io.apimachinery.pkg.apis.meta.v1.", "k8s.io.api.apps.v1.")
#: vmplane's model names that differ from upstream's definition names.
RENAMED = {
    "ArchConfiguration": "v1.ArchSpecificConfiguration",
    "ArchitectureConfiguration": "v1.ArchConfiguration",
    "CloudInitNoCloud": "v1.CloudInitNoCloudSource",
    "ContainerDisk": "v1.ContainerDiskSource",
    "EmptyDisk": "v1.EmptyDiskSource",
    "GuestMappingPassthrough": "v1.NUMAGuestMappingPassthrough",
    "PersistentVolumeClaimSource": "v1.PersistentVolumeClaimVolumeSource",
    "SecretRef": "k8s.io.api.core.v1.LocalObjectReference",
    "StateChangeRequest": "v1.VirtualMachineStateChangeRequest",
    "TemplateMeta": "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "VMIInterfaceStatus": "v1.VirtualMachineInstanceNetworkInterface",
    "VirtualMachineTemplate": "v1.VirtualMachineInstanceTemplateSpec",
    "Condition": "v1.VirtualMachineCondition",
    "InterfaceBindingMethod": "v1.Interface",
}


def _models() -> dict[str, dict[str, Any]]:
    """Every definition of vmplane's typed kinds, by pydantic name (the kinds themselves included)."""
    found: dict[str, dict[str, Any]] = {}
    for model in (VirtualMachine, VirtualMachineInstance, KubeVirt, ControllerRevision):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def main(swagger_path: str, commit: str) -> int:
    with open(swagger_path) as handle:
        upstream = json.load(handle)["definitions"]
    out: dict[str, Any] = {
        "_source": f"kubevirt/kubevirt {commit} api/openapi-spec/swagger.json (Apache-2.0)",
        "definitions": {},
    }
    for name, schema in sorted(_models().items()):
        candidates = [RENAMED[name]] if name in RENAMED else [p + name for p in PREFIXES]
        match = next((upstream[c] for c in candidates if c in upstream), None)
        if match is None:
            continue
        entry: dict[str, str] = {}
        if match.get("description"):
            entry[""] = match["description"]
        theirs = match.get("properties", {})
        for field in schema.get("properties", {}):
            if theirs.get(field, {}).get("description"):
                entry[field] = theirs[field]["description"]
        if entry:
            out["definitions"][name] = entry
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
