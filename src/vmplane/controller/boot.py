"""What starting a VM creates: the boot snapshot (ControllerRevision) and the VMI. Pure."""

from __future__ import annotations

from typing import Any

from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.ownership import MACHINE_FINALIZER, controller_reference
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceStatus, VMIPhase
from vmplane.rollout.effective import EffectiveSpec

__all__ = [
    "MACHINE_FINALIZER",
    "VM_GENERATION_ANNOTATION",
    "VM_LABEL",
    "boot_objects",
    "revision_name",
    "revision_prefix",
]

VM_LABEL = "kubevirt.io/vm"
VM_GENERATION_ANNOTATION = "kubevirt.io/vm-generation"


def revision_prefix(vm_uid: str) -> str:
    """Every boot snapshot of one VM starts with this."""
    return f"revision-start-vm-{vm_uid}-"


def revision_name(vm_uid: str, generation: int) -> str:
    """``revision-start-vm-<uid>-<generation>``, as upstream names it."""
    return f"{revision_prefix(vm_uid)}{generation}"


def _owner(vm: VirtualMachine) -> dict[str, Any]:
    assert vm.metadata.name is not None
    assert vm.metadata.uid is not None
    return controller_reference(
        api_version=vm.api_version, kind=vm.kind, name=vm.metadata.name, uid=vm.metadata.uid
    )


def boot_objects(vm: VirtualMachine, effective: EffectiveSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ControllerRevision and the VMI (wire form) that starting ``vm`` now creates."""
    meta = vm.metadata
    assert meta.uid is not None
    assert meta.name is not None
    generation = meta.generation or 1
    name = revision_name(meta.uid, generation)
    vm_spec = vm.spec.to_wire()
    vm_spec["template"]["spec"] = effective.spec.to_wire()
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": {VM_LABEL: meta.name},
            "ownerReferences": [_owner(vm)],
        },
        "data": {"spec": vm_spec},
        "revision": generation,
    }
    template_meta = vm.spec.template.metadata
    labels = dict(template_meta.labels or {}) if template_meta else {}
    annotations = dict(template_meta.annotations or {}) if template_meta else {}
    labels[VM_LABEL] = meta.name
    annotations[VM_GENERATION_ANNOTATION] = str(generation)
    status = VirtualMachineInstanceStatus(
        phase=VMIPhase.PENDING,
        current_cpu_topology=initial_cpu_topology(effective.spec),
        memory=initial_memory_status(effective.spec),
        virtual_machine_revision_name=name,
    )
    vmi = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner(vm)],
            "finalizers": [MACHINE_FINALIZER],
        },
        "spec": effective.spec.to_wire(),
        "status": status.to_wire(),
    }
    return revision, vmi
