"""Expanding a VM template by its instance type and preference (``rollout.instancetypes.expand``)."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.instancetype import InstancetypeSpec, PreferenceSpec, unsupported_causes
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.effective import Provenance
from vmplane.rollout.instancetypes import expand


def _template(domain: dict[str, Any] | None = None, **spec: Any) -> VirtualMachineInstanceSpec:
    return VirtualMachineInstanceSpec.model_validate({"domain": domain or {"devices": {}}, **spec})


def _instancetype(cpu: int = 2, memory: str = "1Gi", **extra: Any) -> InstancetypeSpec:
    return InstancetypeSpec.model_validate({"cpu": {"guest": cpu}, "memory": {"guest": memory}, **extra})


def _preference(**spec: Any) -> PreferenceSpec:
    return PreferenceSpec.model_validate(spec)


def test_instancetype_sets_sockets_and_guest_memory_by_default() -> None:
    expanded = expand(_template(), _instancetype(4, "2Gi"), None)
    cpu, memory = expanded.spec.domain.cpu, expanded.spec.domain.memory
    assert cpu is not None
    assert memory is not None
    assert (cpu.sockets, cpu.cores, cpu.threads, str(memory.guest)) == (4, 1, 1, "2Gi")
    assert expanded.sources["domain.cpu.sockets"] is Provenance.INSTANCETYPE
    assert expanded.sources["domain.memory.guest"] is Provenance.INSTANCETYPE


@pytest.mark.parametrize(
    ("topology", "expected"),
    [("cores", (1, 4, 1)), ("preferThreads", (1, 1, 4)), ("any", (4, 1, 1)), ("preferSockets", (4, 1, 1))],
)
def test_preferred_topology_lays_out_the_vcpus(topology: str, expected: tuple[int, int, int]) -> None:
    preference = _preference(cpu={"preferredCPUTopology": topology})
    cpu = expand(_template(), _instancetype(4), preference).spec.domain.cpu
    assert cpu is not None
    assert (cpu.sockets, cpu.cores, cpu.threads) == expected


@pytest.mark.parametrize(
    ("domain", "path"),
    [
        ({"cpu": {"sockets": 2}}, "spec.template.spec.domain.cpu.sockets"),
        ({"cpu": {"cores": 2}}, "spec.template.spec.domain.cpu.cores"),
        ({"memory": {"guest": "128Mi"}}, "spec.template.spec.domain.memory.guest"),
        (
            {"resources": {"requests": {"memory": "1Gi"}}},
            "spec.template.spec.domain.resources.requests.memory",
        ),
        ({"resources": {"limits": {"cpu": "1"}}}, "spec.template.spec.domain.resources.limits.cpu"),
    ],
    ids=["sockets", "cores", "memory", "memory-request", "cpu-limit"],
)
def test_template_setting_what_the_instancetype_sets_conflicts(domain: dict[str, Any], path: str) -> None:
    expanded = expand(_template({"devices": {}, **domain}), _instancetype(), None)
    assert [(c.field, c.message) for c in expanded.causes] == [
        (path, f"VM field(s) {path} conflicts with selected instance type")
    ]


def test_cpu_model_conflicts_only_when_both_set_it() -> None:
    template = _template({"devices": {}, "cpu": {"model": "host-passthrough"}})
    assert expand(template, _instancetype(), None).causes == []
    with_model = _instancetype(cpu=1)
    with_model = with_model.model_copy(update={"cpu": with_model.cpu.model_copy(update={"model": "Skylake"})})
    assert [c.field for c in expand(template, with_model, None).causes] == [
        "spec.template.spec.domain.cpu.model"
    ]


def test_preference_fills_only_what_the_template_leaves_unset() -> None:
    template = _template(
        {
            "devices": {
                "disks": [
                    {"name": "a", "disk": {}},
                    {"name": "b", "disk": {"bus": "sata"}},
                    {"name": "c", "cdrom": {}},
                ],
                "interfaces": [{"name": "default", "masquerade": {}}],
            }
        }
    )
    preference = _preference(
        devices={
            "preferredDiskBus": "virtio",
            "preferredCdromBus": "sata",
            "preferredInterfaceModel": "e1000",
        },
        machine={"preferredMachineType": "pc-q35-7.2"},
    )
    expanded = expand(template, None, preference)
    devices = expanded.spec.domain.devices
    assert devices.disks is not None
    assert devices.interfaces is not None
    buses = [(d.disk or d.cdrom).bus for d in devices.disks]  # type: ignore[union-attr]
    assert buses == ["virtio", "sata", "sata"]
    assert devices.interfaces[0].model == "e1000"
    assert expanded.spec.domain.machine is not None
    assert expanded.spec.domain.machine.type == "pc-q35-7.2"
    assert expanded.sources["domain.devices.disks[name=a].disk.bus"] is Provenance.PREFERENCE
    assert "domain.devices.disks[name=b].disk.bus" not in expanded.sources


def test_preference_firmware_and_features() -> None:
    preference = _preference(
        firmware={"preferredEfi": {"secureBoot": True}}, features={"preferredSmm": {}, "preferredAcpi": {}}
    )
    domain = expand(_template(), None, preference).spec.domain
    assert domain.firmware is not None
    assert domain.firmware.bootloader is not None
    assert domain.firmware.bootloader.efi == {"secureBoot": True}
    assert domain.features is not None
    assert domain.features.smm is not None
    assert domain.features.acpi is not None


def test_preference_requirements_refuse_a_small_instancetype() -> None:
    preference = _preference(requirements={"cpu": {"guest": 2}, "memory": {"guest": "2Gi"}})
    causes = expand(_template(), _instancetype(1, "1Gi"), preference).causes
    assert [c.message for c in causes] == [
        "insufficient CPU resources of 1 vCPU provided by instance type, preference requires 2 vCPU",
        "insufficient Memory resources of 1Gi provided by instance type, preference requires 2Gi",
    ]


def test_nothing_referenced_leaves_the_template_alone() -> None:
    template = _template({"devices": {}, "cpu": {"sockets": 3}})
    assert expand(template, None, None).spec is template


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_instancetype(gpus=[{"name": "g", "deviceName": "x"}]), "spec.gpus"),
        (
            _instancetype(memory="1Gi").model_copy(
                update={
                    "memory": _instancetype(memory="1Gi").memory.model_copy(
                        update={"hugepages": {"pageSize": "2Mi"}}
                    )
                }
            ),
            "spec.memory.hugepages",
        ),
        (_preference(devices={"preferredTPM": {}}), "spec.devices.preferredTPM"),
        (_preference(clock={"preferredClockOffset": {"utc": {}}}), "spec.clock"),
        (_preference(cpu={"preferredCPUTopology": "spread"}), "spec.cpu.preferredCPUTopology"),
    ],
    ids=["gpus", "hugepages", "tpm", "clock", "spread"],
)
def test_fields_vmplane_cannot_honour_are_refused_by_name(
    spec: InstancetypeSpec | PreferenceSpec, field: str
) -> None:
    assert [c.field for c in unsupported_causes(spec)] == [field]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            InstancetypeSpec.model_validate(
                {"cpu": {"guest": 1, "model": "x,kvm=off"}, "memory": {"guest": "1Gi"}}
            ),
            "spec.cpu.model",
        ),
        (
            _preference(machine={"preferredMachineType": "pc-i440fx-7.2,accel=kvm"}),
            "spec.machine.preferredMachineType",
        ),
    ],
    ids=["cpu-model", "machine-type"],
)
def test_values_that_reach_qemu_options_must_have_their_shape(
    spec: InstancetypeSpec | PreferenceSpec, field: str
) -> None:
    assert [c.field for c in unsupported_causes(spec)] == [field]
