"""Admission of the VMI spec fields that reach a host path or a QEMU option, one cause per field.

Names become file names and QEMU ids, claim names become files under the namespace's claim
directory, the machine type becomes ``-machine``, the CPU model ``-cpu``, the firmware UUID ``-uuid``:
each is held to the upstream rule (``api.names``) here, and the node agent checks the same rules
again for an object that never went through admission. Machine types are an allowlist read from the
QEMU binary by the composition root (``hypervisor.qemu.machine_types``) and injected, so admission stays
pure; without one only the shape of a q35 machine name is checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from vmplane.api import names
from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = ["HOST_CPU_MODELS", "Q35_MACHINE", "machine_type_causes", "spec_field_causes"]

#: A q35 machine name as QEMU spells it (``q35``, ``pc-q35-7.2``): what vmplane can boot, since its
#: devices sit on PCIe root ports, which only q35 has. Nothing else may reach ``-machine``.
Q35_MACHINE = re.compile(r"q35|pc-q35-[0-9]+\.[0-9]+", re.ASCII)
#: KubeVirt's CPU models that mean "the host's CPU" (the driver picks the QEMU model itself).
HOST_CPU_MODELS = frozenset({"host-passthrough", "host-model"})
_POSITIVE = "{field} '{value}': must be greater than or equal to 0."


def _label(field: str, value: str) -> Iterator[FieldCause]:
    # KubeVirt reports IsDNS1123Label's messages as they are (validateDiskNameAsContainerName).
    for message in names.dns1123_label_errors(value):
        yield FieldCause(field, message)


def _subdomain(field: str, value: str) -> Iterator[FieldCause]:
    errors = names.dns1123_subdomain_errors(value)
    if errors:
        yield FieldCause(field, f"Invalid value: {value!r}: {', '.join(errors)}")


def _not_negative(field: str, value: Quantity | None) -> Iterator[FieldCause]:
    if value is not None and value.value < 0:
        yield FieldCause(field, _POSITIVE.format(field=field, value=value))


def _name_causes(spec: VirtualMachineInstanceSpec, prefix: str) -> Iterator[FieldCause]:
    devices = spec.domain.devices
    for i, disk in enumerate(devices.disks or ()):
        field = f"{prefix}.domain.devices.disks[{i}]"
        yield from _label(f"{field}.name", disk.name)
        if disk.serial is not None:
            for message in names.serial_errors(field, disk.serial):
                yield FieldCause(f"{field}.serial", message)
    for i, volume in enumerate(spec.volumes or ()):
        field = f"{prefix}.volumes[{i}]"
        # Upstream checks the disk of the same name; a volume's name also names its files here.
        yield from _label(f"{field}.name", volume.name)
        if volume.persistent_volume_claim is not None:
            yield from _subdomain(
                f"{field}.persistentVolumeClaim.claimName", volume.persistent_volume_claim.claim_name
            )
        if volume.data_volume is not None:
            yield from _subdomain(f"{field}.dataVolume.name", volume.data_volume.name)
        if volume.empty_disk is not None:
            yield from _not_negative(f"{field}.emptyDisk.capacity", volume.empty_disk.capacity)
        if volume.host_disk is not None:
            yield from _not_negative(f"{field}.hostDisk.capacity", volume.host_disk.capacity)
    for i, interface in enumerate(devices.interfaces or ()):
        if not names.interface_name_ok(interface.name):
            yield FieldCause(f"{prefix}.domain.devices.interfaces[{i}].name", names.INTERFACE_NAME_MESSAGE)
    for i, network in enumerate(spec.networks or ()):
        if not names.interface_name_ok(network.name):
            yield FieldCause(f"{prefix}.networks[{i}].name", names.INTERFACE_NAME_MESSAGE)
    if spec.hostname:
        errors = names.dns1123_label_errors(spec.hostname)
        if errors:
            yield FieldCause(
                f"{prefix}.hostname",
                f"{prefix}.hostname does not conform to the kubernetes DNS_LABEL rules : {', '.join(errors)}",
            )
    if spec.subdomain:
        errors = names.dns1123_subdomain_errors(spec.subdomain)
        if errors:
            yield FieldCause(
                f"{prefix}.subdomain",
                f"{prefix}.subdomain does not conform to the kubernetes DNS_SUBDOMAIN rules : "
                f"{', '.join(errors)}",
            )


def _pci_address_causes(spec: VirtualMachineInstanceSpec, prefix: str) -> Iterator[FieldCause]:
    # Refused rather than ignored: the QEMU driver gives every boot-time device a root port of its
    # own, so an address asked for would silently not be the one the guest sees.
    devices = spec.domain.devices
    placed = [
        (f"disks[{i}].disk", d.disk.pci_address if d.disk else None)
        for i, d in enumerate(devices.disks or ())
    ]
    placed += [(f"interfaces[{i}]", n.pci_address) for i, n in enumerate(devices.interfaces or ())]
    for path, address in placed:
        if address is not None:
            field = f"{prefix}.domain.devices.{path}.pciAddress"
            yield FieldCause(
                field,
                f"{field}: Forbidden: vmplane places every device on a PCIe root port of its choosing; "
                "a chosen PCI address is not supported",
                CauseType.FIELD_VALUE_FORBIDDEN,
            )


def _domain_causes(spec: VirtualMachineInstanceSpec, prefix: str) -> Iterator[FieldCause]:
    yield from _pci_address_causes(spec, prefix)
    dom = spec.domain
    field = f"{prefix}.domain"
    if dom.memory is not None:
        yield from _not_negative(f"{field}.memory.guest", dom.memory.guest)
        yield from _not_negative(f"{field}.memory.maxGuest", dom.memory.max_guest)
    if dom.resources is not None:
        for kind in ("requests", "limits"):
            for resource, value in (getattr(dom.resources, kind) or {}).items():
                yield from _not_negative(f"{field}.resources.{kind}.{resource}", value)
    cpu = dom.cpu
    if (
        cpu is not None
        and cpu.model
        and cpu.model not in HOST_CPU_MODELS
        and not names.CPU_MODEL.fullmatch(cpu.model)
    ):
        yield FieldCause(
            f"{field}.cpu.model",
            f"Invalid value: {cpu.model!r}: a CPU model name consists of letters, digits, '.', '_' and '-'",
        )
    firmware = dom.firmware
    if firmware is None:
        return
    if firmware.uuid is not None and not names.UUID.fullmatch(firmware.uuid):
        yield FieldCause(
            f"{field}.firmware.uuid",
            f"Invalid value: {firmware.uuid!r}: must be a UUID "
            "(such as 6a1a24a1-4061-4607-8bf4-a3963d0c5895)",
        )
    boot = firmware.kernel_boot
    if boot is not None and boot.kernel_args is not None:
        args_field = f"{field}.firmware.kernelBoot.kernelArgs"
        if boot.container is None and boot.kernel_args:
            yield FieldCause(args_field, "kernel arguments cannot be provided without an external kernel")
        if "\x00" in boot.kernel_args:
            yield FieldCause(args_field, f"{args_field} must not contain a NUL character")


def machine_type_causes(
    spec: VirtualMachineInstanceSpec, *, prefix: str, machine_types: Sequence[str] | None
) -> list[FieldCause]:
    """KubeVirt's ``validateEmulatedMachine`` against exact names (``q35*`` would admit ``q35,x=y``)."""
    machine = spec.domain.machine
    if machine is None or not machine.type:
        return []
    field = f"{prefix}.domain.machine.type"
    allowed = list(machine_types) if machine_types is not None else None
    if Q35_MACHINE.fullmatch(machine.type) and (allowed is None or machine.type in allowed):
        return []
    shown = " ".join(allowed) if allowed is not None else "q35 pc-q35-<version>"
    return [FieldCause(field, f"{field} is not supported: {machine.type} (allowed values: [{shown}])")]


def spec_field_causes(
    spec: VirtualMachineInstanceSpec, *, prefix: str, machine_types: Sequence[str] | None = None
) -> list[FieldCause]:
    """Every cause among the fields that reach a host path or a QEMU option (empty when all is well).

    ``machine_types``: the machine types this host's QEMU offers (None: only their shape is checked).
    """
    return [
        *_name_causes(spec, prefix),
        *_domain_causes(spec, prefix),
        *machine_type_causes(spec, prefix=prefix, machine_types=machine_types),
    ]
