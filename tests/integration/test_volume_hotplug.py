"""Volume hotplug through the API against ``vmplane serve --hypervisor simulated``: upstream's
``addvolume``/``removevolume`` subresources on a VMI and on a VM, ``vmplane addvolume|removevolume``, and
the VMI's ``status.volumeStatus`` as the node agent reports it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_api_support import ApiServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(180)]

DOMAIN = """\
      domain:
        devices:
          disks:
          - name: root
            disk:
              bus: virtio
          - name: cd
            cdrom:
              bus: sata
        memory:
          guest: 128Mi
      terminationGracePeriodSeconds: 0
      volumes:
      - name: root
        containerDisk:
          image: quay.io/containerdisks/fedora:latest
"""
VMI = (
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: {name}\nspec:\n"
    + "\n".join(line[4:] for line in DOMAIN.splitlines())
)
VM = (
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\nspec:\n"
    "  runStrategy: Always\n  template:\n    spec:\n" + DOMAIN
)
ROOT = "/apis/subresources.kubevirt.io/v1/namespaces/default"
SCSI_DISK = {
    "name": "data",
    "disk": {"disk": {"bus": "scsi"}},
    "volumeSource": {"persistentVolumeClaim": {"claimName": "data-claim"}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    started = start_server(tmp_path_factory.mktemp("volumes"))
    try:
        yield started
    finally:
        assert stop_server(started) == 0


def _get(server: ApiServer, kind: str, name: str) -> dict[str, Any] | None:
    result = server.kubectl("get", kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _eventually(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def _running(server: ApiServer, kind: str, name: str) -> dict[str, Any]:
    server.kubectl("apply", "-f", "-", stdin=(VM if kind == "vm" else VMI).format(name=name))
    return _eventually(
        f"{name} Running",
        lambda: (vmi := _get(server, "vmi", name)) is not None
        and vmi.get("status", {}).get("phase") == "Running"
        and vmi,
    )


def _volume_status(server: ApiServer, name: str, volume: str) -> dict[str, Any] | None:
    vmi = _get(server, "vmi", name) or {}
    return next((v for v in vmi.get("status", {}).get("volumeStatus") or () if v["name"] == volume), None)


def _ready(server: ApiServer, name: str, volume: str) -> dict[str, Any]:
    return _eventually(
        f"{volume} Ready in {name}",
        lambda: (v := _volume_status(server, name, volume)) is not None and v["phase"] == "Ready" and v,
    )


def test_addvolume_hotplugs_a_scsi_disk_into_a_vmi_and_volume_status_shows_it(server: ApiServer) -> None:
    _running(server, "vmi", "add-vmi")
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachineinstances/add-vmi/addvolume", body=SCSI_DISK)
    assert status == 202
    assert _ready(server, "add-vmi", "data") == {
        "name": "data",
        "target": "sdb",  # after the CD-ROM drive's sda, as libvirt letters them
        "phase": "Ready",
        "reason": "VolumeReady",
        "message": "Successfully attach hotplugged volume data to VM",
        "hotplugVolume": {},
    }


def test_removevolume_unplugs_it_and_its_volume_status_goes(server: ApiServer) -> None:
    _running(server, "vmi", "remove-vmi")
    server.request("PUT", f"{ROOT}/virtualmachineinstances/remove-vmi/addvolume", body=SCSI_DISK)
    _ready(server, "remove-vmi", "data")
    status, _, _ = server.request(
        "PUT", f"{ROOT}/virtualmachineinstances/remove-vmi/removevolume", body={"name": "data"}
    )
    assert status == 202
    _eventually("data gone", lambda: _volume_status(server, "remove-vmi", "data") is None)
    vmi = _get(server, "vmi", "remove-vmi") or {}
    assert [d["name"] for d in vmi["spec"]["domain"]["devices"]["disks"]] == ["root", "cd"]


def test_addvolume_into_an_empty_cdrom_drive_inserts_the_medium(server: ApiServer) -> None:
    _running(server, "vmi", "cd-vmi")
    body = {"name": "cd", "disk": {"cdrom": {"bus": "sata"}}, "volumeSource": {"dataVolume": {"name": "iso"}}}
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachineinstances/cd-vmi/addvolume", body=body)
    assert status == 202
    assert _ready(server, "cd-vmi", "cd")["target"] == "sda"
    server.request("PUT", f"{ROOT}/virtualmachineinstances/cd-vmi/removevolume", body={"name": "cd"})
    _eventually("the medium ejected", lambda: _volume_status(server, "cd-vmi", "cd") is None)


def test_a_hostile_claim_name_is_a_400_naming_the_field(server: ApiServer) -> None:
    _running(server, "vmi", "hostile-vmi")
    body = {**SCSI_DISK, "volumeSource": {"persistentVolumeClaim": {"claimName": "../../etc/passwd"}}}
    status, reply, _ = server.request(
        "PUT", f"{ROOT}/virtualmachineinstances/hostile-vmi/addvolume", body=body
    )
    assert status == 400
    assert reply["kind"] == "Status"
    assert reply["message"].startswith("volumeSource.persistentVolumeClaim.claimName: Invalid value")


def test_addvolume_of_a_volume_that_exists_is_upstreams_conflict(server: ApiServer) -> None:
    _running(server, "vmi", "twice-vmi")
    server.request("PUT", f"{ROOT}/virtualmachineinstances/twice-vmi/addvolume", body=SCSI_DISK)
    status, reply, _ = server.request(
        "PUT", f"{ROOT}/virtualmachineinstances/twice-vmi/addvolume", body=SCSI_DISK
    )
    assert status == 409
    assert reply["message"] == "Unable to add volume [data] because volume with that name already exists"


def test_addvolume_on_a_missing_vmi_is_not_found(server: ApiServer) -> None:
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachineinstances/nowhere/addvolume", body=SCSI_DISK)
    assert status == 404


def test_a_dry_run_addvolume_changes_nothing(server: ApiServer) -> None:
    _running(server, "vmi", "dry-vmi")
    body = {**SCSI_DISK, "dryRun": ["All"]}
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachineinstances/dry-vmi/addvolume", body=body)
    assert status == 202
    vmi = _get(server, "vmi", "dry-vmi") or {}
    assert [v["name"] for v in vmi["spec"]["volumes"]] == ["root"]


def test_the_vmi_of_a_vm_takes_volumes_through_the_vm_as_upstream(server: ApiServer) -> None:
    _running(server, "vm", "owned")
    status, reply, _ = server.request(
        "PUT", f"{ROOT}/virtualmachineinstances/owned/addvolume", body=SCSI_DISK
    )
    assert (status, reply["message"]) == (400, "VMI default/owned is owned by a VM")


def test_vm_addvolume_hotplugs_and_keeps_it_in_the_template_with_nothing_pending(server: ApiServer) -> None:
    _running(server, "vm", "persist")
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachines/persist/addvolume", body=SCSI_DISK)
    assert status == 202
    _ready(server, "persist", "data")
    vm = _get(server, "vm", "persist") or {}
    volume = next(v for v in vm["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert volume["persistentVolumeClaim"] == {"claimName": "data-claim", "hotpluggable": True}
    time.sleep(1.0)  # the VM controller re-plans within ~0.1 s of the writes
    vm = _get(server, "vm", "persist") or {}
    assert not vm["status"].get("pendingChanges")
    assert "RestartRequired" not in {c["type"] for c in vm["status"].get("conditions") or ()}


def test_vmplane_addvolume_and_removevolume_as_virtctl(server: ApiServer) -> None:
    _running(server, "vmi", "cli-vmi")
    added = server.vmplane("addvolume", "cli-vmi", "--volume-name", "cli-claim", check=False)
    assert (
        added.stdout.strip()
        == "Successfully submitted add volume request to VMI cli-vmi for volume cli-claim"
    )
    assert _ready(server, "cli-vmi", "cli-claim")["target"] == "sdb"
    removed = server.vmplane("removevolume", "cli-vmi", "--volume-name", "cli-claim", check=False)
    assert removed.returncode == 0, removed.stderr
    _eventually("cli-claim gone", lambda: _volume_status(server, "cli-vmi", "cli-claim") is None)


def test_vmplane_addvolume_refuses_a_hostile_volume_name_before_asking(server: ApiServer) -> None:
    result = server.vmplane("addvolume", "cli-vmi", "--volume-name", "x/../../y", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: --volume-name: invalid value 'x/../../y'")


def test_vm_removevolume_unplugs_it_and_drops_it_from_the_template(server: ApiServer) -> None:
    _running(server, "vm", "unpersist")
    server.request("PUT", f"{ROOT}/virtualmachines/unpersist/addvolume", body=SCSI_DISK)
    _ready(server, "unpersist", "data")
    status, _, _ = server.request(
        "PUT", f"{ROOT}/virtualmachines/unpersist/removevolume", body={"name": "data"}
    )
    assert status == 202
    _eventually("data gone", lambda: _volume_status(server, "unpersist", "data") is None)
    vm = _get(server, "vm", "unpersist") or {}
    assert [v["name"] for v in vm["spec"]["template"]["spec"]["volumes"]] == ["root"]


def test_vm_removevolume_of_a_boot_volume_is_upstreams_conflict(server: ApiServer) -> None:
    _running(server, "vm", "keep-root")
    status, reply, _ = server.request(
        "PUT", f"{ROOT}/virtualmachines/keep-root/removevolume", body={"name": "root"}
    )
    assert (status, reply["message"]) == (
        409,
        "Unable to remove volume [root] because it is not hotpluggable",
    )


def test_a_hostile_disk_in_addvolume_is_refused_naming_the_field(server: ApiServer) -> None:
    _running(server, "vmi", "bad-disk")
    body = {**SCSI_DISK, "disk": {"disk": {"bus": "virtio", "pciAddress": "0000:00:01.0,addr=1"}}}
    status, reply, _ = server.request("PUT", f"{ROOT}/virtualmachineinstances/bad-disk/addvolume", body=body)
    assert 400 <= status < 500
    assert "pciAddress" in reply["message"]


def test_a_cdrom_medium_added_by_a_vm_edit_under_stage_is_staged(server: ApiServer) -> None:
    _running(server, "vm", "staged-cd")
    volume = {"name": "cd", "persistentVolumeClaim": {"claimName": "iso", "hotpluggable": True}}
    patch = [{"op": "add", "path": "/spec/template/spec/volumes/-", "value": volume}]
    server.kubectl("patch", "vm", "staged-cd", "--type", "json", "-p", json.dumps(patch))
    vm = _eventually(
        "RestartRequired",
        lambda: (v := _get(server, "vm", "staged-cd")) is not None
        and v["status"].get("pendingChanges")
        and v,
    )
    assert [(p["path"], p["reason"]) for p in vm["status"]["pendingChanges"]] == [
        ("spec.template.spec.volumes[name=cd]", "StagedByStrategy")
    ]
    assert "RestartRequired" in {c["type"] for c in vm["status"]["conditions"]}
    assert _volume_status(server, "staged-cd", "cd") is None


def test_addvolume_on_a_vmi_that_is_not_running_is_upstreams_conflict(server: ApiServer) -> None:
    server.kubectl(
        "apply",
        "-f",
        "-",
        stdin=VMI.format(name="not-yet").replace(
            "spec:\n", "spec:\n  nodeSelector:\n    nowhere: 'true'\n", 1
        ),
    )
    status, reply, _ = server.request(
        "PUT", f"{ROOT}/virtualmachineinstances/not-yet/addvolume", body=SCSI_DISK
    )
    assert (status, reply["message"]) == (409, "VMI is not running")


def test_a_dry_run_vm_addvolume_changes_neither_the_vm_nor_its_vmi(server: ApiServer) -> None:
    _running(server, "vm", "dry-vm")
    body = {**SCSI_DISK, "dryRun": ["All"]}
    status, _, _ = server.request("PUT", f"{ROOT}/virtualmachines/dry-vm/addvolume", body=body)
    assert status == 202
    vm = _get(server, "vm", "dry-vm") or {}
    vmi = _get(server, "vmi", "dry-vm") or {}
    assert [v["name"] for v in vm["spec"]["template"]["spec"]["volumes"]] == ["root"]
    assert [v["name"] for v in vmi["spec"]["volumes"]] == ["root"]
