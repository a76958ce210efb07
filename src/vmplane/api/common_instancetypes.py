"""The default cluster instance types and preferences a fresh installation has, after KubeVirt's
common-instancetypes (https://github.com/kubevirt/common-instancetypes), written here from their
published sizes so ``virtctl create vm --instancetype u1.medium`` works out of the box.

The U series (``u1.*``, general purpose) is complete; of the preferences, ``fedora`` (virtio devices,
EFI with secure boot and SMM, at least 1 vCPU and 2Gi) and a generic ``linux`` (virtio devices).
Upstream's spread CPU topology is not set: vmplane refuses it.
"""

from __future__ import annotations

from typing import Any

from vmplane.api.resources import CLUSTER_INSTANCETYPES, CLUSTER_PREFERENCES

__all__ = ["U1_SIZES", "common_objects"]

#: ``u1.<size>``: (vCPUs, guest memory), as common-instancetypes' ``instancetypes/u/1/sizes.yaml``.
U1_SIZES: dict[str, tuple[int, str]] = {
    "nano": (1, "512Mi"),
    "micro": (1, "1Gi"),
    "small": (1, "2Gi"),
    "medium": (1, "4Gi"),
    "2xmedium": (2, "4Gi"),
    "large": (2, "8Gi"),
    "xlarge": (4, "16Gi"),
    "2xlarge": (8, "32Gi"),
    "4xlarge": (16, "64Gi"),
    "8xlarge": (32, "128Gi"),
}
_GROUP = "instancetype.kubevirt.io"
_U_DESCRIPTION = (
    "The U Series is quite neutral and provides resources for general purpose applications. "
    "VMs of instance types will share physical CPU cores on a time-slice basis with other VMs."
)
_VIRTIO = {"preferredDiskBus": "virtio", "preferredInterfaceModel": "virtio", "preferredRng": {}}


def _u1(size: str, cpu: int, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{_GROUP}/v1beta1",
        "kind": "VirtualMachineClusterInstancetype",
        "metadata": {
            "name": f"u1.{size}",
            "labels": {
                f"{_GROUP}/cpu": str(cpu),
                f"{_GROUP}/memory": memory,
                f"{_GROUP}/size": size,
                f"{_GROUP}/class": "general.purpose",
                f"{_GROUP}/vendor": "kubevirt.io",
                f"{_GROUP}/version": "1",
            },
            "annotations": {
                f"{_GROUP}/description": _U_DESCRIPTION,
                f"{_GROUP}/displayName": "General Purpose",
            },
        },
        "spec": {"cpu": {"guest": cpu}, "memory": {"guest": memory}},
    }


def _preference(name: str, display: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{_GROUP}/v1beta1",
        "kind": "VirtualMachineClusterPreference",
        "metadata": {
            "name": name,
            "labels": {f"{_GROUP}/vendor": "kubevirt.io", f"{_GROUP}/os-type": "linux"},
            "annotations": {f"{_GROUP}/displayName": display},
        },
        "spec": spec,
    }


def common_objects() -> list[tuple[str, dict[str, Any]]]:
    """(store resource, object) for every default cluster instance type and preference."""
    objects = [(CLUSTER_INSTANCETYPES, _u1(size, cpu, memory)) for size, (cpu, memory) in U1_SIZES.items()]
    objects.append((CLUSTER_PREFERENCES, _preference("linux", "Linux", {"devices": dict(_VIRTIO)})))
    fedora = {
        "devices": dict(_VIRTIO),
        "features": {"preferredSmm": {}},
        "firmware": {"preferredEfi": {"secureBoot": True}},
        "requirements": {"cpu": {"guest": 1}, "memory": {"guest": "2Gi"}},
    }
    objects.append((CLUSTER_PREFERENCES, _preference("fedora", "Fedora", fedora)))
    return objects
