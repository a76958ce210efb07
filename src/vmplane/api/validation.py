"""Admission: every rule a VM must satisfy, each failure one cause naming its field; all are reported.

Upstream KubeVirt's rules keep upstream's messages; the structural rules (names, references between
disks and volumes, interfaces and networks) are the ones KubeVirt's VMI admitter applies.

The fields that reach host paths or QEMU options (names, claim names, machine type, UUID, ...) are
held to upstream's rules by ``api.spec_rules``. Host paths are confined (``volume_path_causes``): a
``hostDisk`` path must be absolute and lie under one of the host's allowed directories when the caller
names them; image references follow the container reference grammar and paths inside an image are
absolute without relative components (KubeVirt's ``ValidatePath``), so none can climb out with ``..``.
The check is lexical (admission does no I/O); the node agent checks again with symlinks resolved
before it creates or opens anything.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.kubevirt import KubeVirtConfiguration, RolloutStrategy
from vmplane.api.memory_hotplug import memory_hotplug_errors
from vmplane.api.meta import ObjectMeta
from vmplane.api.metadata_validation import metadata_causes
from vmplane.api.names import image_reference_errors, inner_path_errors
from vmplane.api.restart_approval import approval_causes
from vmplane.api.spec_rules import spec_field_causes
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = ["INTERFACE_MODELS", "validate_metadata", "validate_vm", "validate_vmi_spec", "volume_path_causes"]

TEMPLATE = "spec.template.spec"
INTERFACE_MODELS = ("virtio", "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAC = re.compile(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}")


def validate_metadata(meta: ObjectMeta, *, namespaced: bool = True) -> list[FieldCause]:
    """Name, namespace, label and annotation rules every object follows (``metadata_validation``)."""
    return metadata_causes(meta.model_dump(by_alias=True, exclude_none=True), namespaced=namespaced)


def _duplicates(names: Iterable[str], field: str) -> list[FieldCause]:
    counts = Counter(names)
    return [
        FieldCause(field, f"Duplicate value: {name!r}", CauseType.FIELD_VALUE_DUPLICATE)
        for name, count in counts.items()
        if count > 1
    ]


def validate_vmi_spec(spec: VirtualMachineInstanceSpec, *, prefix: str = TEMPLATE) -> list[FieldCause]:
    """Structural rules of a VMI spec: unique names, disk↔volume and interface↔network references."""
    causes: list[FieldCause] = []
    devices = spec.domain.devices
    disks, interfaces = devices.disks or [], devices.interfaces or []
    volumes, networks = spec.volumes or [], spec.networks or []
    volume_names = {v.name for v in volumes}
    network_names = {n.name for n in networks}

    causes += _duplicates((d.name for d in disks), f"{prefix}.domain.devices.disks")
    causes += _duplicates((v.name for v in volumes), f"{prefix}.volumes")
    causes += _duplicates((i.name for i in interfaces), f"{prefix}.domain.devices.interfaces")
    causes += _duplicates((n.name for n in networks), f"{prefix}.networks")

    for i, disk in enumerate(disks):
        field = f"{prefix}.domain.devices.disks[{i}]"
        targets = [t for t in (disk.disk, disk.cdrom, disk.lun) if t is not None]
        if len(targets) > 1:
            causes.append(FieldCause(field, "should have only one of disk, cdrom or lun"))
        if disk.name not in volume_names and disk.cdrom is None:
            causes.append(
                FieldCause(
                    f"{field}.name",
                    f"{disk.name} must have a matching volume",
                    CauseType.FIELD_VALUE_REQUIRED,
                )
            )
    for i, volume in enumerate(volumes):
        field = f"{prefix}.volumes[{i}]"
        if len(volume.sources) != 1:
            causes.append(FieldCause(field, "must have exactly one source type set"))
        if volume.cloud_init_no_cloud is not None:
            data = volume.cloud_init_no_cloud
            if data.user_data is not None and data.user_data_base64 is not None:
                causes.append(
                    FieldCause(
                        f"{field}.cloudInitNoCloud", "userData and userDataBase64 are mutually exclusive"
                    )
                )
    for i, interface in enumerate(interfaces):
        field = f"{prefix}.domain.devices.interfaces[{i}]"
        if interface.name not in network_names:
            causes.append(
                FieldCause(
                    f"{field}.name",
                    f"{interface.name} must have a matching network",
                    CauseType.FIELD_VALUE_REQUIRED,
                )
            )
        bindings = [
            b for b in ("masquerade", "bridge", "sriov", "passt") if getattr(interface, b) is not None
        ]
        if len(bindings) + (interface.binding is not None) > 1:
            causes.append(FieldCause(field, "should have only one binding method"))
        if interface.model is not None and interface.model not in INTERFACE_MODELS:
            causes.append(
                FieldCause(
                    f"{field}.model",
                    f"Unsupported value: {interface.model!r}: "
                    f"supported values: {', '.join(INTERFACE_MODELS)}",
                    CauseType.FIELD_VALUE_NOT_SUPPORTED,
                )
            )
        if interface.mac_address is not None and not _MAC.fullmatch(interface.mac_address):
            causes.append(
                FieldCause(
                    f"{field}.macAddress",
                    f"Invalid value: {interface.mac_address!r}: must be a valid MAC address",
                )
            )
        if interface.state == "absent" and interface.masquerade is not None:
            causes.append(
                FieldCause(
                    f"{field}.state", '"absent" is not supported for an interface with the masquerade binding'
                )
            )
    for i, network in enumerate(networks):
        field = f"{prefix}.networks[{i}]"
        if (network.pod is None) == (network.multus is None):
            causes.append(FieldCause(field, "should have exactly one network source (pod or multus)"))
    if sum(1 for n in networks if n.pod is not None) > 1:
        causes.append(FieldCause(f"{prefix}.networks", "more than one pod network is not allowed"))
    return causes


def _climbs(path: str) -> bool:
    return ".." in path.split("/")


def _host_path_cause(field: str, path: str, allowed: Sequence[str] | None) -> FieldCause | None:
    if "\x00" in path:
        return FieldCause(field, f"{field} must not contain a NUL character")
    if _climbs(path):
        return FieldCause(field, f"Invalid value: {path!r}: must not contain '..'")
    if allowed is None:
        return None
    roots = [posixpath.normpath(d) for d in allowed]
    shown = ", ".join(roots) or "none configured"
    if not path.startswith("/"):
        return FieldCause(
            field, f"Invalid value: {path!r}: must be an absolute path under a host disk directory ({shown})"
        )
    normal = posixpath.normpath(path)
    if not any(normal.startswith(root.rstrip("/") + "/") for root in roots):
        return FieldCause(
            field, f"Invalid value: {path!r}: must lie under one of the host disk directories ({shown})"
        )
    return None


def _image_cause(field: str, reference: str) -> FieldCause | None:
    errors = image_reference_errors(reference)
    if errors:
        return FieldCause(
            field,
            f"Invalid value: {reference!r}: {', '.join(errors)} (a container image reference such as "
            "quay.io/containerdisks/fedora:40, naming an entry of the local image directory)",
        )
    return None


def _inner_path_cause(field: str, path: str | None) -> FieldCause | None:
    errors = inner_path_errors(field, path) if path else []
    return FieldCause(field, errors[0]) if errors else None


def volume_path_causes(
    spec: VirtualMachineInstanceSpec,
    *,
    prefix: str = TEMPLATE,
    allowed_host_dirs: Sequence[str] | None = None,
) -> list[FieldCause]:
    """Confinement of host paths and image references; ``allowed_host_dirs`` None skips the directory rule."""
    found: list[FieldCause | None] = []
    for i, volume in enumerate(spec.volumes or ()):
        field = f"{prefix}.volumes[{i}]"
        if volume.host_disk is not None:
            found.append(_host_path_cause(f"{field}.hostDisk.path", volume.host_disk.path, allowed_host_dirs))
        if volume.container_disk is not None:
            found.append(_image_cause(f"{field}.containerDisk.image", volume.container_disk.image))
            found.append(_inner_path_cause(f"{field}.containerDisk.path", volume.container_disk.path))
    firmware = spec.domain.firmware
    boot = firmware.kernel_boot if firmware is not None else None
    if boot is not None and boot.container is not None:
        field = f"{prefix}.domain.firmware.kernelBoot.container"
        found.append(_image_cause(f"{field}.image", boot.container.image))
        found.append(_inner_path_cause(f"{field}.kernelPath", boot.container.kernel_path))
        found.append(_inner_path_cause(f"{field}.initrdPath", boot.container.initrd_path))
    return [cause for cause in found if cause is not None]


def validate_vm(
    vm: VirtualMachine,
    config: KubeVirtConfiguration,
    *,
    allowed_host_dirs: Sequence[str] | None = None,
    machine_types: Sequence[str] | None = None,
) -> list[FieldCause]:
    """All admission causes for a VM under the cluster configuration (empty when it is valid).

    ``allowed_host_dirs``: the directories ``hostDisk`` paths must lie under (None: not checked).
    ``machine_types``: the machine types this host's QEMU offers (None: only their q35 shape is checked).
    """
    causes = validate_metadata(vm.metadata) + approval_causes(vm)
    spec = vm.spec.template.spec
    if vm.spec.running is not None and vm.spec.run_strategy is not None:
        causes.append(
            FieldCause(
                "spec.running",
                "running and runStrategy are mutually exclusive",
                CauseType.FIELD_VALUE_FORBIDDEN,
            )
        )
    causes += validate_vmi_spec(spec)
    causes += volume_path_causes(spec, allowed_host_dirs=allowed_host_dirs)
    causes += spec_field_causes(spec, prefix=TEMPLATE, machine_types=machine_types)

    cpu = spec.domain.cpu
    if cpu is not None and cpu.max_sockets and (cpu.sockets or 0) > cpu.max_sockets:
        causes.append(
            FieldCause(
                f"{TEMPLATE}.domain.cpu.sockets",
                "Number of sockets in CPU topology is greater than the maximum sockets allowed",
            )
        )
    memory = spec.domain.memory
    resources = spec.domain.resources
    if config.rollout_strategy is RolloutStrategy.LIVE_UPDATE:
        if memory is not None and memory.max_guest is not None:
            causes += [
                FieldCause(f"{TEMPLATE}.domain.memory.guest", message)
                for message in memory_hotplug_errors(spec, memory.max_guest)
            ]
    elif memory is not None and memory.guest is not None and resources is not None:
        limit = (resources.limits or {}).get("memory")
        if limit is not None and limit.value != 0 and memory.guest > limit:
            causes.append(
                FieldCause(
                    f"{TEMPLATE}.domain.memory.guest",
                    f"{TEMPLATE}.domain.memory.guest '{memory.guest}' must be equal to or less than the "
                    f"memory limit {TEMPLATE}.domain.resources.limits.memory '{limit}'",
                )
            )
    return causes
