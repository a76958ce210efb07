"""A chosen PCI address is refused naming the field, not accepted and ignored (SPEC: never dropped)."""

from __future__ import annotations

from typing import Any

from vmplane.api.errors import CauseType
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.validation import validate_vm
from vmplane.api.vm import VirtualMachine

DEVICES = "spec.template.spec.domain.devices"


def vm_with(devices: dict[str, Any]) -> VirtualMachine:
    spec: dict[str, Any] = {"domain": {"devices": devices}}
    if "disks" in devices:
        spec["volumes"] = [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}]
    if "interfaces" in devices:
        spec["networks"] = [{"name": "n", "pod": {}}]
    return VirtualMachine.model_validate({"metadata": {"name": "vm1"}, "spec": {"template": {"spec": spec}}})


def pci_causes(machine: VirtualMachine) -> list[tuple[str, CauseType]]:
    found = validate_vm(machine, KubeVirtConfiguration())
    return [(c.field, c.reason) for c in found if c.field.endswith("pciAddress")]


def test_a_disks_pci_address_is_forbidden_naming_the_field() -> None:
    machine = vm_with({"disks": [{"name": "d", "disk": {"bus": "virtio", "pciAddress": "0000:81:01.0"}}]})
    assert pci_causes(machine) == [(f"{DEVICES}.disks[0].disk.pciAddress", CauseType.FIELD_VALUE_FORBIDDEN)]


def test_an_interfaces_pci_address_is_forbidden_naming_the_field() -> None:
    machine = vm_with({"interfaces": [{"name": "n", "masquerade": {}, "pciAddress": "0000:81:00.1"}]})
    assert pci_causes(machine) == [(f"{DEVICES}.interfaces[0].pciAddress", CauseType.FIELD_VALUE_FORBIDDEN)]


def test_devices_without_an_address_are_accepted() -> None:
    machine = vm_with({"disks": [{"name": "d", "disk": {"bus": "virtio"}}]})
    assert pci_causes(machine) == []
