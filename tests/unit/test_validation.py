"""Admission of VMs: structural rules, each failure one cause naming its field, all reported together."""

from __future__ import annotations

from typing import Any

from vmplane.api.errors import CauseType
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.validation import validate_vm
from vmplane.api.vm import VirtualMachine

STAGE = KubeVirtConfiguration()


def vm(spec: dict[str, Any], *, name: str = "vm1", **top: Any) -> VirtualMachine:
    return VirtualMachine.model_validate(
        {"metadata": {"name": name}, "spec": {"template": {"spec": spec}, **top}}
    )


def fields(machine: VirtualMachine) -> list[str]:
    return [c.field for c in validate_vm(machine, STAGE)]


def test_minimal_vm_is_valid() -> None:
    assert validate_vm(vm({}), STAGE) == []


def test_disk_without_volume_is_rejected_on_its_name() -> None:
    spec = {"domain": {"devices": {"disks": [{"name": "root", "disk": {}}]}}}
    [cause] = validate_vm(vm(spec), STAGE)
    assert (cause.field, cause.message) == (
        "spec.template.spec.domain.devices.disks[0].name",
        "root must have a matching volume",
    )


def test_empty_cdrom_drive_needs_no_volume() -> None:
    assert fields(vm({"domain": {"devices": {"disks": [{"name": "cd", "cdrom": {}}]}}})) == []


def test_interface_without_network_is_rejected() -> None:
    spec = {"domain": {"devices": {"interfaces": [{"name": "nic", "bridge": {}}]}}}
    assert fields(vm(spec)) == ["spec.template.spec.domain.devices.interfaces[0].name"]


def test_duplicate_disk_names_are_rejected() -> None:
    spec = {
        "domain": {"devices": {"disks": [{"name": "d", "disk": {}}, {"name": "d", "disk": {}}]}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}],
    }
    causes = validate_vm(vm(spec), STAGE)
    assert [(c.field, c.reason) for c in causes] == [
        ("spec.template.spec.domain.devices.disks", CauseType.FIELD_VALUE_DUPLICATE)
    ]


def test_volume_with_two_sources_is_rejected() -> None:
    spec = {
        "domain": {"devices": {"disks": [{"name": "d", "disk": {}}]}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}, "containerDisk": {"image": "x"}}],
    }
    assert fields(vm(spec)) == ["spec.template.spec.volumes[0]"]


def test_unsupported_nic_model_and_bad_mac_are_both_reported() -> None:
    spec = {
        "domain": {
            "devices": {"interfaces": [{"name": "n", "bridge": {}, "model": "tulip", "macAddress": "zz"}]}
        },
        "networks": [{"name": "n", "multus": {"networkName": "net"}}],
    }
    assert fields(vm(spec)) == [
        "spec.template.spec.domain.devices.interfaces[0].model",
        "spec.template.spec.domain.devices.interfaces[0].macAddress",
    ]


def test_running_and_run_strategy_together_are_rejected() -> None:
    assert fields(vm({}, running=True, runStrategy="Always")) == ["spec.running"]


def test_name_must_be_a_dns_subdomain() -> None:
    assert fields(vm({}, name="Bad_Name")) == ["metadata.name"]


def test_sockets_above_explicit_max_sockets_is_rejected_with_upstream_message() -> None:
    [cause] = validate_vm(vm({"domain": {"cpu": {"sockets": 5, "maxSockets": 4}}}), STAGE)
    assert (cause.field, cause.message) == (
        "spec.template.spec.domain.cpu.sockets",
        "Number of sockets in CPU topology is greater than the maximum sockets allowed",
    )


def test_all_causes_are_reported_together() -> None:
    spec = {
        "domain": {
            "cpu": {"sockets": 5, "maxSockets": 4},
            "devices": {"disks": [{"name": "root", "disk": {}}]},
        },
    }
    assert len(validate_vm(vm(spec, name="UPPER"), STAGE)) == 3
