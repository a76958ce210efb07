"""Upstream's ``addvolume``/``removevolume`` requests (``AddVolumeOptions``, ``RemoveVolumeOptions``),
decoded and applied to a VMI spec. Pure.

The bodies are upstream's: ``{"name": ..., "disk": {...}, "volumeSource": {"persistentVolumeClaim":
{"claimName": ...}} | {"dataVolume": {"name": ...}}, "dryRun": ["All"]}`` and ``{"name": ..., "dryRun":
[...]}``. Every string is hostile: the volume name must be a DNS label (it names a disk, a QEMU device
and a host file), the claim or DataVolume name a DNS subdomain; a body that says anything else is
refused naming the field. The messages are virt-api's (``pkg/virt-api/rest/subresource.go``). As
upstream, the added volume is made ``hotpluggable`` and its disk takes the volume's name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from vmplane.api import names
from vmplane.api.domain import Disk
from vmplane.api.model import WireModel
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.api.volumes import DataVolumeSource, PersistentVolumeClaimSource, Volume

__all__ = [
    "HOTPLUG_BUSES",
    "AddVolumeOptions",
    "HotplugVolumeSource",
    "RemoveVolumeOptions",
    "VolumeRequestError",
    "add_volume",
    "decode_add",
    "decode_remove",
    "has_volume",
    "remove_volume",
]


#: The buses a disk can be hot-plugged on (a CD-ROM drive is the boot's: only its medium is added).
HOTPLUG_BUSES = ("scsi", "virtio")


class VolumeRequestError(Exception):
    """A request refused: ``code`` 400 (a malformed body) or 409 (it conflicts with the spec)."""

    def __init__(self, message: str, *, code: Literal[400, 409] = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class HotplugVolumeSource(WireModel):
    """Upstream's ``HotplugVolumeSource``: a claim or a DataVolume, nothing else can be hot-plugged."""

    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    data_volume: DataVolumeSource | None = None


class AddVolumeOptions(WireModel):
    name: str = ""
    disk: Disk | None = None
    volume_source: HotplugVolumeSource | None = None
    dry_run: list[str] | None = None


class RemoveVolumeOptions(WireModel):
    name: str = ""
    dry_run: list[str] | None = None


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _dry_run(value: list[str] | None) -> bool:
    if not value:
        return False
    if value != ["All"]:
        raise VolumeRequestError('dryRun: the only supported value is ["All"]')
    return True


def _check_name(field: str, value: str, errors: list[str]) -> None:
    if errors:
        raise VolumeRequestError(f"{field}: Invalid value: {value!r}: {errors[0]}")


def decode_add(body: Any) -> tuple[AddVolumeOptions, bool]:
    """The options of an ``addvolume`` body and whether it is a dry run; VolumeRequestError (400) if not."""
    if not isinstance(body, dict):
        raise VolumeRequestError("Request with no body, a new name is expected as the request body")
    if isinstance(body.get("disk"), dict) and "name" not in body["disk"]:
        # Upstream names the disk after the volume; the body need not.
        body = {**body, "disk": {**body["disk"], "name": body.get("name") or ""}}
    try:
        opts = AddVolumeOptions.model_validate(body)
    except ValidationError as err:
        raise VolumeRequestError(_validation_message(err)) from err
    if not opts.name:
        raise VolumeRequestError("AddVolumeOptions requires name to be set")
    if opts.disk is None:
        raise VolumeRequestError("AddVolumeOptions requires disk to not be nil")
    if opts.volume_source is None:
        raise VolumeRequestError("AddVolumeOptions requires VolumeSource to not be nil")
    _check_name("name", opts.name, names.dns1123_label_errors(opts.name))
    source = opts.volume_source
    if (source.persistent_volume_claim is None) == (source.data_volume is None):
        raise VolumeRequestError("volumeSource: must have exactly one of persistentVolumeClaim or dataVolume")
    if source.persistent_volume_claim is not None:
        claim = source.persistent_volume_claim.claim_name
        _check_name(
            "volumeSource.persistentVolumeClaim.claimName", claim, names.dns1123_subdomain_errors(claim)
        )
    if source.data_volume is not None:
        dv = source.data_volume.name
        _check_name("volumeSource.dataVolume.name", dv, names.dns1123_subdomain_errors(dv))
    if opts.disk.name not in ("", opts.name):
        raise VolumeRequestError(
            f"disk.name: {opts.disk.name!r} must be the volume's name {opts.name!r} or unset"
        )
    for message in names.serial_errors("disk.serial", opts.disk.serial or ""):
        raise VolumeRequestError(message)
    for kind, target in (("disk", opts.disk.disk), ("lun", opts.disk.lun)):
        bus = target.bus if target is not None else None
        if bus is not None and bus not in HOTPLUG_BUSES:
            raise VolumeRequestError(
                f"disk.{kind}.bus: Unsupported value: {bus!r}: a hot-plugged disk's bus is one of "
                + ", ".join(HOTPLUG_BUSES)
            )
    if opts.disk.disk is not None and opts.disk.disk.pci_address is not None:
        # The agent puts a hot-plugged disk on a free root port of its choosing.
        raise VolumeRequestError(
            f"disk.disk.pciAddress: Invalid value: {opts.disk.disk.pci_address!r}: "
            "a hot-plugged disk's PCI address is not chosen by the request"
        )
    return opts, _dry_run(opts.dry_run)


def decode_remove(body: Any) -> tuple[RemoveVolumeOptions, bool]:
    """The options of a ``removevolume`` body and whether it is a dry run."""
    if not isinstance(body, dict):
        raise VolumeRequestError("Request with no body, a new name is expected as the request body")
    try:
        opts = RemoveVolumeOptions.model_validate(body)
    except ValidationError as err:
        raise VolumeRequestError(_validation_message(err)) from err
    if not opts.name:
        raise VolumeRequestError("RemoveVolumeOptions requires name to be set")
    _check_name("name", opts.name, names.dns1123_label_errors(opts.name))
    return opts, _dry_run(opts.dry_run)


def _source_name(volume: Volume) -> str | None:
    if volume.persistent_volume_claim is not None:
        return volume.persistent_volume_claim.claim_name
    if volume.data_volume is not None:
        return volume.data_volume.name
    return None


def has_volume(spec: VirtualMachineInstanceSpec, name: str) -> bool:
    """Whether ``spec`` has a volume called ``name`` or whose claim or DataVolume is ``name``."""
    return any(name in (v.name, _source_name(v)) for v in spec.volumes or ())


def _hotplug_volume(opts: AddVolumeOptions) -> Volume:
    source = opts.volume_source
    assert source is not None  # decode_add checked it
    if source.persistent_volume_claim is not None:
        claim = source.persistent_volume_claim.model_copy(update={"hotpluggable": True})
        return Volume(name=opts.name, persistent_volume_claim=claim)
    assert source.data_volume is not None
    return Volume(name=opts.name, data_volume=source.data_volume.model_copy(update={"hotpluggable": True}))


def add_volume(spec: VirtualMachineInstanceSpec, opts: AddVolumeOptions) -> VirtualMachineInstanceSpec:
    """``spec`` with the volume and its disk added; VolumeRequestError (409) as upstream's checks."""
    volume = _hotplug_volume(opts)
    source = _source_name(volume)
    volumes = list(spec.volumes or ())
    for present in volumes:
        if present.name == opts.name:
            raise VolumeRequestError(
                f"Unable to add volume [{opts.name}] because volume with that name already exists", code=409
            )
        if source is not None and _source_name(present) == source:
            raise VolumeRequestError(
                f"Unable to add volume source [{source}] because it already exists", code=409
            )
    disks = list(spec.domain.devices.disks or ())
    # An empty CD-ROM drive of that name takes the medium; any other disk of that name is a clash.
    drive = next((d for d in disks if d.name == opts.name), None)
    if drive is not None and drive.cdrom is None:
        raise VolumeRequestError(
            f"Unable to add volume [{opts.name}] because disk with that name already exists", code=409
        )
    assert opts.disk is not None
    if drive is None and opts.disk.cdrom is not None:
        raise VolumeRequestError(
            f"Unable to add volume [{opts.name}] because a CD-ROM drive cannot be hot-plugged: "
            "give the VM an empty cdrom disk of that name and add the medium to it",
            code=409,
        )
    if drive is None:
        disks.append(opts.disk.model_copy(update={"name": opts.name}))
    devices = spec.domain.devices.model_copy(update={"disks": disks})
    domain = spec.domain.model_copy(update={"devices": devices})
    return spec.model_copy(update={"domain": domain, "volumes": [*volumes, volume]})


def remove_volume(spec: VirtualMachineInstanceSpec, name: str) -> VirtualMachineInstanceSpec:
    """``spec`` without the hotpluggable volume ``name`` (by volume or claim name, as upstream) and its
    disk; a CD-ROM drive stays, empty. VolumeRequestError (409) as upstream's checks."""
    volumes = list(spec.volumes or ())
    found = next((v for v in volumes if name in (v.name, _source_name(v))), None)
    if found is None:
        raise VolumeRequestError(f"Unable to remove volume [{name}] because it does not exist", code=409)
    if not found.hotpluggable:
        raise VolumeRequestError(
            f"Unable to remove volume [{found.name}] because it is not hotpluggable", code=409
        )
    disks = [d for d in spec.domain.devices.disks or () if d.name != found.name or d.cdrom is not None]
    devices = spec.domain.devices.model_copy(update={"disks": disks})
    domain = spec.domain.model_copy(update={"devices": devices})
    return spec.model_copy(update={"domain": domain, "volumes": [v for v in volumes if v.name != found.name]})
