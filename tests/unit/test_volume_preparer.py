"""QemuVolumePreparer on a temporary data directory with the real ``qemu-img`` (``requires("qemu")``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pycdlib.pycdlib import PyCdlib

from vmplane.agent.machine import machine_spec
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.api.volumes import CloudInitNoCloud
from vmplane.host.cidata import NoCloudData, nocloud_data, seed_image
from vmplane.host.paths import HostPaths, VolumeError
from vmplane.host.volumes import QemuVolumePreparer

pytestmark = pytest.mark.requires("qemu")

GiB = 1 << 30


def vmi(volumes: list[dict[str, Any]], *, uid: str = "uid-1", **extra: Any) -> VirtualMachineInstance:
    disks = [{"name": v["name"], "disk": {"bus": "virtio"}} for v in volumes]
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "vm1", "namespace": "ns", "uid": uid, **extra.pop("metadata", {})},
            "spec": {
                "domain": {
                    "memory": {"guest": "128Mi"},
                    "devices": {"disks": disks},
                    **extra.pop("domain", {}),
                },
                "volumes": volumes,
            },
        }
    )


def info(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture
def paths(tmp_path: Path) -> HostPaths:
    return HostPaths(tmp_path / "data")


@pytest.fixture
def preparer(paths: HostPaths) -> QemuVolumePreparer:
    return QemuVolumePreparer(paths=paths, allowed_host_dirs=[paths.root / "hostdisks"])


async def prepare(preparer: QemuVolumePreparer, paths: HostPaths, machine: VirtualMachineInstance) -> None:
    await preparer.prepare(machine, machine_spec(machine, paths=paths))


async def test_claims_are_qcow2_of_the_default_or_annotated_size_and_outlive_the_vmi(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    machine = vmi(
        [
            {"name": "a", "persistentVolumeClaim": {"claimName": "plain"}},
            {"name": "b", "dataVolume": {"name": "big", "hotpluggable": True}},
        ],
        metadata={"annotations": {"claims.vmplane.io/big": "3Gi"}},
    )
    await prepare(preparer, paths, machine)
    assert (info(paths.claim("ns", "plain"))["format"], info(paths.claim("ns", "plain"))["virtual-size"]) == (
        "qcow2",
        GiB,
    )
    assert info(paths.claim("ns", "big"))["virtual-size"] == 3 * GiB
    await preparer.release(machine)
    assert paths.claim("ns", "plain").is_file()
    assert not paths.vmi_dir("ns", "vm1").exists()


async def test_empty_disk_and_idempotent_prepare(preparer: QemuVolumePreparer, paths: HostPaths) -> None:
    machine = vmi([{"name": "scratch", "emptyDisk": {"capacity": "64Mi"}}])
    await prepare(preparer, paths, machine)
    image = paths.vmi_dir("ns", "vm1") / "scratch.qcow2"
    assert info(image)["virtual-size"] == 64 << 20
    inode = image.stat().st_ino
    await prepare(preparer, paths, machine)  # again, as for a hot-plugged disk: nothing is recreated
    assert image.stat().st_ino == inode
    assert [p.name for p in image.parent.iterdir() if p.name.endswith(".tmp")] == []


async def test_leftovers_of_an_earlier_vmi_are_discarded_and_its_release_spares_the_new_one(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    volumes = [{"name": "scratch", "emptyDisk": {"capacity": "64Mi"}}]
    old, new = vmi(volumes, uid="old"), vmi(volumes, uid="new")
    await prepare(preparer, paths, old)
    image = paths.vmi_dir("ns", "vm1") / "scratch.qcow2"
    stray = image.with_name("written-by-the-old-guest")
    stray.write_bytes(b"old")
    await prepare(preparer, paths, new)
    assert not stray.exists()
    assert image.is_file()
    await preparer.release(old)
    assert image.is_file()
    await preparer.release(new)
    assert not image.exists()


def make_base(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    return path


async def test_container_disk_is_an_overlay_on_the_image_which_is_never_written(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    base = make_base(paths.image("quay.io/x/fedora:40") / "disk" / "fedora.qcow2")
    before = base.read_bytes()
    machine = vmi([{"name": "root", "containerDisk": {"image": "quay.io/x/fedora:40"}}])
    await prepare(preparer, paths, machine)
    overlay = info(paths.vmi_dir("ns", "vm1") / "root.overlay.qcow2")
    assert (overlay["backing-filename"], overlay["backing-filename-format"]) == (str(base), "qcow2")
    assert base.read_bytes() == before


async def test_container_disk_as_a_plain_file_and_by_path(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    raw = paths.image("local/raw:1")
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"\0" * 4096)
    multi = paths.image("local/multi:1")
    make_base(multi / "a.qcow2")
    make_base(multi / "b.qcow2")
    machine = vmi(
        [
            {"name": "r", "containerDisk": {"image": "local/raw:1"}},
            {"name": "m", "containerDisk": {"image": "local/multi:1", "path": "/b.qcow2"}},
        ]
    )
    await prepare(preparer, paths, machine)
    vmi_dir = paths.vmi_dir("ns", "vm1")
    assert info(vmi_dir / "r.overlay.qcow2")["backing-filename-format"] == "raw"
    assert info(vmi_dir / "m.overlay.qcow2")["backing-filename"] == str(multi / "b.qcow2")


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"containerDisk": {"image": "missing/image:1"}}, "is not in the local image directory"),
        ({"containerDisk": {"image": "local/multi:1"}}, "several disk images"),
        ({"hostDisk": {"path": "/etc/passwd", "type": "Disk"}}, "outside the allowed directories"),
        ({"hostDisk": {"path": "{root}/hostdisks/none.img", "type": "Disk"}}, "does not exist (type Disk)"),
        ({"hostDisk": {"path": "{root}/hostdisks/escape/x.img", "type": "Disk"}}, "outside the allowed"),
        ({"cloudInitNoCloud": {"userDataBase64": "!!"}}, "userDataBase64 is not valid base64"),
    ],
    ids=["missing-image", "ambiguous-image", "host-outside", "host-disk-missing", "host-symlink", "bad-b64"],
)
async def test_what_cannot_be_provided_is_a_volume_error(
    preparer: QemuVolumePreparer, paths: HostPaths, volume: dict[str, Any], message: str
) -> None:
    multi = paths.image("local/multi:1")
    make_base(multi / "disk" / "a.qcow2")
    make_base(multi / "disk" / "b.qcow2")
    (paths.root / "hostdisks").mkdir(parents=True)
    os.symlink("/tmp", paths.root / "hostdisks" / "escape")
    if "hostDisk" in volume:
        volume = {
            "hostDisk": {**volume["hostDisk"], "path": volume["hostDisk"]["path"].format(root=paths.root)}
        }
    with pytest.raises(VolumeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await prepare(preparer, paths, vmi([{"name": "v", **volume}]))


async def test_host_disk_or_create_is_a_sparse_raw_file(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    path = paths.root / "hostdisks" / "sub" / "h.img"
    await prepare(
        preparer,
        paths,
        vmi([{"name": "h", "hostDisk": {"path": str(path), "type": "DiskOrCreate", "capacity": "1Gi"}}]),
    )
    assert path.stat().st_size == GiB
    assert path.stat().st_blocks * 512 < GiB  # sparse
    await preparer.release(vmi([]))
    assert path.is_file()  # a host disk is the host's, not the VMI's


async def test_kernel_boot_needs_its_files_in_the_image_directory(
    preparer: QemuVolumePreparer, paths: HostPaths
) -> None:
    domain = {
        "firmware": {
            "kernelBoot": {
                "container": {"image": "k/guest:1", "kernelPath": "/vmlinuz", "initrdPath": "/initrd.img"}
            }
        }
    }
    entry = paths.image("k/guest:1")
    entry.mkdir(parents=True)
    (entry / "vmlinuz").write_bytes(b"k")
    with pytest.raises(VolumeError, match=r"initrdPath '/initrd\.img'"):
        await prepare(preparer, paths, vmi([], domain=domain))
    (entry / "initrd.img").write_bytes(b"i")
    await prepare(preparer, paths, vmi([], domain=domain))


async def test_cloud_init_seed_is_a_cidata_iso(preparer: QemuVolumePreparer, paths: HostPaths) -> None:
    user = "#cloud-config\npassword: x\n"
    machine = vmi([{"name": "seed", "cloudInitNoCloud": {"userData": user, "networkData": "version: 2\n"}}])
    await prepare(preparer, paths, machine)
    iso = PyCdlib()
    iso.open(str(paths.vmi_dir("ns", "vm1") / "seed.cidata.iso"))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        files = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, joliet_path=f"/{name}")
            assert out.getvalue().decode() == files[name]
    finally:
        iso.close()
    assert files == {
        "user-data": user,
        "meta-data": "instance-id: uid-1\nlocal-hostname: vm1\n",
        "network-config": "version: 2\n",
    }


def test_seed_without_network_data_has_no_network_config() -> None:
    data = nocloud_data(CloudInitNoCloud(user_data_base64="aGk="), instance_id="i", hostname="h")
    assert data == NoCloudData(user_data=b"hi", meta_data=b"instance-id: i\nlocal-hostname: h\n")
    assert seed_image(data)[0x8000 + 40 : 0x8000 + 46] == b"cidata"  # the PVD's volume identifier
