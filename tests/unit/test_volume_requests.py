"""``api.volume_requests``: upstream's addvolume/removevolume bodies, decoded and applied. Table tests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from vmplane.api.volume_requests import (
    VolumeRequestError,
    add_volume,
    decode_add,
    decode_remove,
    has_volume,
    remove_volume,
)
from vmplane.testing.builders import container_disk, disk, pvc, vm_spec

SPEC = vm_spec(
    disks=[disk("root"), disk("cd", cdrom=True), disk("data")],
    volumes=[container_disk("root"), pvc("data", claim="data-claim", hotpluggable=True)],
)
ADD = {
    "name": "extra",
    "disk": {"disk": {"bus": "scsi"}},
    "volumeSource": {"persistentVolumeClaim": {"claimName": "extra-claim"}},
}


def _add(**changes: Any) -> dict[str, Any]:
    return {**ADD, **changes}


REFUSED_BODIES = {
    "no-body": (None, "Request with no body, a new name is expected as the request body"),
    "no-name": (_add(name=""), "AddVolumeOptions requires name to be set"),
    "no-disk": (_add(disk=None), "AddVolumeOptions requires disk to not be nil"),
    "no-source": (_add(volumeSource=None), "AddVolumeOptions requires VolumeSource to not be nil"),
    "name-with-a-path": (_add(name="../etc"), "name: Invalid value: '../etc'"),
    "name-too-long": (_add(name="a" * 64), "name: Invalid value"),
    "claim-with-a-slash": (
        _add(volumeSource={"persistentVolumeClaim": {"claimName": "a/../../b"}}),
        "volumeSource.persistentVolumeClaim.claimName: Invalid value: 'a/../../b'",
    ),
    "datavolume-with-a-nul": (
        _add(volumeSource={"dataVolume": {"name": "dv\x00"}}),
        "volumeSource.dataVolume.name: Invalid value",
    ),
    "two-sources": (
        _add(volumeSource={"persistentVolumeClaim": {"claimName": "a"}, "dataVolume": {"name": "b"}}),
        "volumeSource: must have exactly one of persistentVolumeClaim or dataVolume",
    ),
    "source-that-cannot-be-hotplugged": (
        _add(volumeSource={"hostDisk": {"path": "/etc/shadow", "type": "Disk"}}),
        "volumeSource.hostDisk: Extra inputs are not permitted",
    ),
    "disk-of-another-name": (_add(disk={"name": "other", "disk": {}}), "disk.name: 'other'"),
    "bad-serial": (_add(disk={"disk": {}, "serial": "a b"}), "disk.serial must be made up of"),
    "sata-bus": (_add(disk={"disk": {"bus": "sata"}}), "disk.disk.bus: Unsupported value: 'sata'"),
    "pci-address": (
        _add(disk={"disk": {"pciAddress": "0000:00:01.0,addr=1"}}),
        "disk.disk.pciAddress: Invalid value: '0000:00:01.0,addr=1'",
    ),
    "unknown-field": (_add(sneaky=1), "sneaky: Extra inputs are not permitted"),
    "wrong-dry-run": (_add(dryRun=["Some"]), 'dryRun: the only supported value is ["All"]'),
}


@pytest.mark.parametrize(("body", "message"), REFUSED_BODIES.values(), ids=REFUSED_BODIES.keys())
def test_a_hostile_or_incomplete_add_body_is_refused_naming_the_field(body: Any, message: str) -> None:
    with pytest.raises(VolumeRequestError, match="^" + re.escape(message)) as err:
        decode_add(body)
    assert err.value.code == 400


def test_a_remove_body_needs_a_dns_label_name() -> None:
    with pytest.raises(VolumeRequestError, match="RemoveVolumeOptions requires name to be set"):
        decode_remove({})
    with pytest.raises(VolumeRequestError, match="name: Invalid value: 'A;rm'"):
        decode_remove({"name": "A;rm"})


def test_an_added_volume_is_hotpluggable_and_its_disk_takes_its_name() -> None:
    opts, dry_run = decode_add(ADD)
    spec = add_volume(SPEC, opts)
    assert not dry_run
    added = spec.to_wire()
    assert added["volumes"][-1] == {
        "name": "extra",
        "persistentVolumeClaim": {"claimName": "extra-claim", "hotpluggable": True},
    }
    assert added["domain"]["devices"]["disks"][-1] == {"name": "extra", "disk": {"bus": "scsi"}}


def test_a_dry_run_is_told_apart() -> None:
    assert decode_add(_add(dryRun=["All"]))[1]


def test_adding_a_medium_to_an_empty_cdrom_drive_keeps_the_drive() -> None:
    opts, _ = decode_add(_add(name="cd", disk={"cdrom": {"bus": "sata"}}))
    spec = add_volume(SPEC, opts)
    assert [d.name for d in spec.domain.devices.disks or ()] == ["root", "cd", "data"]
    assert has_volume(spec, "cd")


ADD_CONFLICTS = {
    "same-volume-name": (
        _add(name="data"),
        "Unable to add volume [data] because volume with that name already exists",
    ),
    "a-new-cdrom-drive": (
        _add(name="cd2", disk={"cdrom": {"bus": "sata"}}),
        "Unable to add volume [cd2] because a CD-ROM drive cannot be hot-plugged",
    ),
    "same-claim": (
        _add(volumeSource={"persistentVolumeClaim": {"claimName": "data-claim"}}),
        "Unable to add volume source [data-claim] because it already exists",
    ),
}


@pytest.mark.parametrize(("body", "message"), ADD_CONFLICTS.values(), ids=ADD_CONFLICTS.keys())
def test_adding_what_is_there_already_conflicts_as_upstream(
    body: dict[str, Any], message: str | None
) -> None:
    opts, _ = decode_add(body)
    if message is None:  # a name no disk or volume has: no conflict
        assert has_volume(add_volume(SPEC, opts), opts.name)
        return
    with pytest.raises(VolumeRequestError, match=re.escape(message)) as err:
        add_volume(SPEC, opts)
    assert err.value.code == 409


def test_removing_a_hotplugged_volume_drops_it_and_its_disk() -> None:
    spec = remove_volume(SPEC, "data")
    assert not has_volume(spec, "data")
    assert [d.name for d in spec.domain.devices.disks or ()] == ["root", "cd"]


def test_a_volume_can_be_removed_by_its_claim_name_as_upstream() -> None:
    assert not has_volume(remove_volume(SPEC, "data-claim"), "data")


def test_removing_a_cdrom_medium_leaves_the_drive_empty() -> None:
    with_medium = add_volume(SPEC, decode_add(_add(name="cd", disk={"cdrom": {}}))[0])
    spec = remove_volume(with_medium, "cd")
    assert not has_volume(spec, "cd")
    assert "cd" in [d.name for d in spec.domain.devices.disks or ()]


REMOVE_CONFLICTS = {
    "missing": ("nothing", "Unable to remove volume [nothing] because it does not exist"),
    "not-hotpluggable": ("root", "Unable to remove volume [root] because it is not hotpluggable"),
}


@pytest.mark.parametrize(("name", "message"), REMOVE_CONFLICTS.values(), ids=REMOVE_CONFLICTS.keys())
def test_removing_what_cannot_be_removed_conflicts_as_upstream(name: str, message: str) -> None:
    with pytest.raises(VolumeRequestError, match=re.escape(message)) as err:
        remove_volume(SPEC, name)
    assert err.value.code == 409
