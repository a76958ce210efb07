"""A VMI that bypassed admission (written straight into the store) gets no file made or opened outside.

Each test hands the node agent's own translation (``machine_spec`` over ``HostPaths``) and its real
``QemuVolumePreparer`` (real ``qemu-img``, real files in a tmp directory) a crafted VMI, and checks
that it is refused with an error naming the field, and that nothing was created: not at the target
outside the data directory, not in another namespace, not anywhere under the data directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from spec_checks_support import crafted_vmi, files_under, vmi_spec

from vmplane.agent.machine import machine_spec
from vmplane.host.paths import HostPaths, MachineSpecError, VolumeError
from vmplane.host.volumes import QemuVolumePreparer

pytestmark = pytest.mark.requires("qemu")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where a crafted path points: a sibling of the data directory, which must stay empty."""
    target = tmp_path / "x"
    target.mkdir()
    return target


@pytest.fixture
def preparer(data: Path) -> QemuVolumePreparer:
    return QemuVolumePreparer(paths=HostPaths(data), allowed_host_dirs=[data / "hostdisks"])


async def refused(preparer: QemuVolumePreparer, data: Path, name: str, spec: dict[str, Any]) -> str:
    """The message the agent refuses ``spec`` with, translating it and then preparing its files."""
    vmi = crafted_vmi(name, spec)

    async def boot_files() -> None:
        await preparer.prepare(vmi, machine_spec(vmi, resolver=HostPaths(data)))

    with pytest.raises(MachineSpecError) as caught:
        await boot_files()
    return str(caught.value)


def make_qcow2(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1M"], check=True, timeout=30)


async def test_claim_name_climbing_out_of_the_claims_directory_is_refused(
    preparer: QemuVolumePreparer, data: Path, outside: Path
) -> None:
    # The repro: ``claimName: "../../../../tmp/x/pwn"`` relative to the claims directory.
    climb = os.path.relpath(outside / "pwn", data / "volumes" / "default" / "claims")
    spec = vmi_spec(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": climb}}])
    message = await refused(preparer, data, "vm", spec)
    assert "persistentVolumeClaim.claimName" in message
    assert files_under(outside) == set()
    assert files_under(data) == set()


async def test_data_volume_name_climbing_out_is_refused(
    preparer: QemuVolumePreparer, data: Path, outside: Path
) -> None:
    climb = os.path.relpath(outside / "pwn", data / "volumes" / "default" / "claims")
    spec = vmi_spec(volumes=[{"name": "d", "dataVolume": {"name": climb}}])
    assert "dataVolume.name" in await refused(preparer, data, "vm", spec)
    assert files_under(outside) == set()
    assert files_under(data) == set()


async def test_claim_of_another_namespace_is_not_attachable_by_name(
    preparer: QemuVolumePreparer, data: Path
) -> None:
    secret = data / "volumes" / "other" / "claims" / "secret.qcow2"
    make_qcow2(secret)
    spec = vmi_spec(
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "../../other/claims/secret"}}]
    )
    assert "persistentVolumeClaim.claimName" in await refused(preparer, data, "vm", spec)
    assert files_under(data / "volumes") == {"other", "other/claims", "other/claims/secret.qcow2"}


async def test_claim_linked_to_another_namespace_is_refused_after_resolving_the_link(
    preparer: QemuVolumePreparer, data: Path
) -> None:
    secret = data / "volumes" / "other" / "claims" / "secret.qcow2"
    make_qcow2(secret)
    mine = data / "volumes" / "default" / "claims"
    mine.mkdir(parents=True)
    (mine / "stolen.qcow2").symlink_to(secret)
    spec = vmi_spec(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "stolen"}}])
    message = await refused(preparer, data, "vm", spec)
    assert "persistentVolumeClaim.claimName" in message
    assert "outside" in message


@pytest.mark.parametrize(
    "volume_name",
    ["../x", "../../../../x", "a/b", ".", "UPPER", "a\x00b"],
    ids=["up", "far", "slash", "dot", "upper", "nul"],
)
async def test_volume_name_that_is_no_dns_label_is_refused(
    preparer: QemuVolumePreparer, data: Path, outside: Path, volume_name: str
) -> None:
    spec = vmi_spec(volumes=[{"name": volume_name, "emptyDisk": {"capacity": "1Mi"}}])
    message = await refused(preparer, data, "vm", spec)
    assert f"disks[name={volume_name}].name" in message
    assert files_under(outside) == set()
    assert files_under(data) == set()


async def test_volume_name_not_used_by_a_disk_cannot_name_a_file_either(data: Path) -> None:
    volume = {"name": "../x", "cloudInitNoCloud": {"userData": "#cloud-config"}}
    vmi = crafted_vmi("vm", vmi_spec(volumes=[volume], disks=[]))
    with pytest.raises(VolumeError, match=r"spec\.volumes\[name=\.\./x\]\.name"):
        HostPaths(data).resolve(vmi, vmi.spec.volumes[0])  # type: ignore[index]


@pytest.mark.parametrize(
    ("namespace", "name", "field"),
    [
        ("default", "../../../x", "metadata.name"),
        ("..", "vm", "metadata.namespace"),
        ("default/../../..", "vm", "metadata.namespace"),
    ],
    ids=["name-climbs", "namespace-dot-dot", "namespace-climbs"],
)
async def test_vmi_directory_is_never_built_from_a_name_that_is_no_kubernetes_name(
    preparer: QemuVolumePreparer, data: Path, namespace: str, name: str, field: str
) -> None:
    vmi = crafted_vmi(name, vmi_spec(), namespace=namespace)
    with pytest.raises(MachineSpecError, match=field):
        machine_spec(vmi, resolver=HostPaths(data))
    with pytest.raises(VolumeError, match=field):
        HostPaths(data).vmi_dir(namespace, name)


async def test_releasing_a_crafted_vmi_removes_nothing_outside_its_directory(
    preparer: QemuVolumePreparer, data: Path, outside: Path
) -> None:
    (outside / "precious").write_text("keep me")
    climb = os.path.relpath(outside, data / "volumes" / "default" / "vmis")
    await preparer.release(crafted_vmi(climb, vmi_spec()))
    assert (outside / "precious").read_text() == "keep me"


async def test_linked_vmi_directory_is_refused_and_its_target_left_alone(
    preparer: QemuVolumePreparer, data: Path, outside: Path
) -> None:
    (outside / "precious").write_text("keep me")
    vmis = data / "volumes" / "default" / "vmis"
    vmis.mkdir(parents=True)
    (vmis / "vm").symlink_to(outside)
    message = await refused(preparer, data, "vm", vmi_spec())
    assert "outside" in message
    await preparer.release(crafted_vmi("vm", vmi_spec()))
    assert files_under(outside) == {"precious"}


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ("../../../x", None),
        ("/etc/passwd", None),
        ("..", None),
        ("local/disk:1", "/../../../../x/pwn"),
        ("local/disk:1", "../disk.qcow2"),
    ],
    ids=["image-climbs", "image-absolute", "image-dot-dot", "path-climbs", "path-relative"],
)
async def test_container_disk_outside_the_image_directory_is_refused(
    preparer: QemuVolumePreparer, data: Path, outside: Path, image: str, path: str | None
) -> None:
    make_qcow2(HostPaths(data).image("local/disk:1") / "disk" / "a.qcow2")
    make_qcow2(outside / "pwn")
    before = files_under(data)
    source: dict[str, Any] = {"image": image, **({"path": path} if path else {})}
    message = await refused(preparer, data, "vm", vmi_spec(volumes=[{"name": "d", "containerDisk": source}]))
    assert "containerDisk" in message
    assert files_under(data) - before <= {"volumes", "volumes/default", "volumes/default/vmis"}


async def test_container_disk_file_linked_out_of_its_image_is_refused(
    preparer: QemuVolumePreparer, data: Path, outside: Path
) -> None:
    make_qcow2(outside / "pwn.qcow2")
    entry = HostPaths(data).image("local/disk:1")
    (entry / "disk").mkdir(parents=True)
    (entry / "disk" / "a.qcow2").symlink_to(outside / "pwn.qcow2")
    message = await refused(
        preparer, data, "vm", vmi_spec(volumes=[{"name": "d", "containerDisk": {"image": "local/disk:1"}}])
    )
    assert "outside" in message
    assert not list((data / "volumes").rglob("*.qcow2"))


@pytest.mark.parametrize(
    ("kernel", "field"),
    [
        ({"kernelPath": "/../../../../etc/shadow"}, "kernelPath"),
        ({"initrdPath": "../../../../etc/shadow"}, "initrdPath"),
        ({"kernelPath": "/vmlinuz\x00"}, "kernelPath"),
    ],
    ids=["kernel-climbs", "initrd-relative", "kernel-nul"],
)
async def test_kernel_boot_files_outside_the_image_are_refused(
    data: Path, kernel: dict[str, str], field: str
) -> None:
    container = {"image": "local/kernel:1", **kernel}
    spec = vmi_spec(domain={"firmware": {"kernelBoot": {"container": container}}})
    with pytest.raises(VolumeError, match=field):
        machine_spec(crafted_vmi("vm", spec), resolver=HostPaths(data))


@pytest.mark.parametrize(
    ("domain", "field"),
    [
        ({"machine": {"type": "pc-q35-7.2,initrd=/etc/shadow"}}, "spec.domain.machine.type"),
        ({"machine": {"type": "q35,firmware=/x"}}, "spec.domain.machine.type"),
        ({"machine": {"type": "pc-i440fx-7.2"}}, "spec.domain.machine.type"),
        ({"cpu": {"model": "max,+vmx"}}, "spec.domain.cpu.model"),
        ({"firmware": {"uuid": "not-a-uuid"}}, "spec.domain.firmware.uuid"),
    ],
    ids=["machine-initrd", "machine-firmware", "machine-i440fx", "cpu-model-options", "firmware-uuid"],
)
def test_values_with_option_syntax_are_refused_before_any_argv(
    data: Path, domain: dict[str, Any], field: str
) -> None:
    with pytest.raises(MachineSpecError, match=field.replace(".", r"\.")):
        machine_spec(crafted_vmi("vm", vmi_spec(domain=domain)), resolver=HostPaths(data))


@pytest.mark.parametrize(
    ("device", "field"),
    [
        ({"interfaces": [{"name": "a,b", "masquerade": {}}]}, "interfaces[name=a,b].name"),
        ({"interfaces": [{"name": "a", "masquerade": {}, "macAddress": "x,y"}]}, "macAddress"),
    ],
    ids=["interface-name", "mac"],
)
def test_interface_values_with_option_syntax_are_refused(
    data: Path, device: dict[str, Any], field: str
) -> None:
    spec = vmi_spec()
    spec["domain"]["devices"] |= device
    with pytest.raises(MachineSpecError, match=field.replace(".", r"\.").replace("[", r"\[")):
        machine_spec(crafted_vmi("vm", spec), resolver=HostPaths(data))


def test_disk_serial_outside_upstreams_characters_is_refused(data: Path) -> None:
    spec = vmi_spec(disks=[{"name": "root", "serial": "x,drive=y"}])
    with pytest.raises(MachineSpecError, match=r"serial|A-Za-z0-9_\.\+-"):
        machine_spec(crafted_vmi("vm", spec), resolver=HostPaths(data))
