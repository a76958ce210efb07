"""Shared by the ``test_spec_*`` suites and ``test_argv_confinement``: crafted VMIs and a file census.

Holds no tests. A crafted VMI is the wire object a client (or someone writing the store directly)
sends; ``files_under`` lists every file and directory below a root so a test can assert that a
refused VMI left nothing behind, inside or outside the data directory.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from vmplane.api.vmi import VirtualMachineInstance

NS = "default"


def vmi_spec(
    *,
    volumes: list[dict[str, Any]] | None = None,
    disks: list[dict[str, Any]] | None = None,
    domain: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A minimal VMI spec (one emptyDisk ``root``); ``domain`` entries replace the default ones."""
    volumes = volumes if volumes is not None else [{"name": "root", "emptyDisk": {"capacity": "64Mi"}}]
    disks = disks if disks is not None else [{"name": v["name"]} for v in volumes]
    return {
        "domain": {"memory": {"guest": "128Mi"}, "devices": {"disks": disks}, **(domain or {})},
        "volumes": volumes,
        **fields,
    }


def vm_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A VirtualMachine wrapping ``spec`` as its template."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"runStrategy": "Halted", "template": {"spec": copy.deepcopy(spec)}},
    }


def vmi_manifest(
    name: str, spec: dict[str, Any], *, namespace: str = NS, uid: str = "uid-1"
) -> dict[str, Any]:
    """A VirtualMachineInstance with ``spec``, as it would sit in the store."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": copy.deepcopy(spec),
    }


def crafted_vmi(name: str, spec: dict[str, Any], *, namespace: str = NS) -> VirtualMachineInstance:
    """A VMI that never went through admission: decoded by the models only (as the agent reads it)."""
    return VirtualMachineInstance.model_validate(vmi_manifest(name, spec, namespace=namespace))


def files_under(root: Path) -> set[str]:
    """Every file, directory and link below ``root`` (relative paths), without following links."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        for entry in (*dirs, *files):
            found.add(os.path.relpath(os.path.join(folder, entry), root))
    return found
