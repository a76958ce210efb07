"""Admission confines host paths and image references (``volume_path_causes``), one cause per field."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.validation import validate_vm
from vmplane.api.vm import VirtualMachine

ALLOWED = ("/srv/vmplane/hostdisks", "/data/disks/")
VOLUMES = "spec.template.spec.volumes[0]"
KERNEL = "spec.template.spec.domain.firmware.kernelBoot.container"


def vm_with(volume: dict[str, Any] | None = None, kernel: dict[str, Any] | None = None) -> VirtualMachine:
    spec: dict[str, Any] = {"domain": {"devices": {}}}
    if volume is not None:
        spec["domain"]["devices"]["disks"] = [{"name": "d", "disk": {}}]
        spec["volumes"] = [{"name": "d", **volume}]
    if kernel is not None:
        spec["domain"]["firmware"] = {"kernelBoot": {"container": kernel}}
    return VirtualMachine.model_validate({"metadata": {"name": "vm1"}, "spec": {"template": {"spec": spec}}})


def causes(machine: VirtualMachine, allowed: tuple[str, ...] | None = ALLOWED) -> list[tuple[str, str]]:
    return [
        (c.field, c.message) for c in validate_vm(machine, KubeVirtConfiguration(), allowed_host_dirs=allowed)
    ]


def host_disk(path: str) -> dict[str, Any]:
    return {"hostDisk": {"path": path, "type": "DiskOrCreate", "capacity": "1Gi"}}


@pytest.mark.parametrize(
    "path",
    ["/srv/vmplane/hostdisks/a.img", "/srv/vmplane/hostdisks/sub/dir/b.img", "/data/disks/c.img"],
    ids=["direct", "nested", "trailing-slash-root"],
)
def test_host_disk_under_an_allowed_directory_is_accepted(path: str) -> None:
    assert causes(vm_with(host_disk(path))) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/etc/passwd",
            "Invalid value: '/etc/passwd': must lie under one of the host disk directories "
            "(/srv/vmplane/hostdisks, /data/disks)",
        ),
        (
            "/srv/vmplane/hostdisks",
            "Invalid value: '/srv/vmplane/hostdisks': must lie under one of the host disk directories "
            "(/srv/vmplane/hostdisks, /data/disks)",
        ),
        (
            "/srv/vmplane/hostdisks-other/x.img",
            "Invalid value: '/srv/vmplane/hostdisks-other/x.img': must lie under one of the host disk "
            "directories (/srv/vmplane/hostdisks, /data/disks)",
        ),
        (
            "/srv/vmplane/hostdisks/../store.db",
            "Invalid value: '/srv/vmplane/hostdisks/../store.db': must not contain '..'",
        ),
        (
            "disk.img",
            "Invalid value: 'disk.img': must be an absolute path under a host disk directory "
            "(/srv/vmplane/hostdisks, /data/disks)",
        ),
    ],
    ids=["outside", "the-directory-itself", "sibling-prefix", "dot-dot", "relative"],
)
def test_host_disk_outside_is_rejected_on_its_path(path: str, message: str) -> None:
    assert causes(vm_with(host_disk(path))) == [(f"{VOLUMES}.hostDisk.path", message)]


def test_without_allowed_directories_only_dot_dot_is_refused() -> None:
    assert causes(vm_with(host_disk("/anywhere/disk.img")), allowed=None) == []
    assert [f for f, _ in causes(vm_with(host_disk("/a/../b")), allowed=None)] == [f"{VOLUMES}.hostDisk.path"]


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("quay.io/containerdisks/fedora:40", True),
        ("registry:5000/a/b@sha256:" + "ab" * 32, True),
        ("..", False),
        (".", False),
        ("", False),
        ("quay.io/../etc", False),
    ],
    ids=["registry-ref", "port-and-digest", "dot-dot", "dot", "empty", "dot-dot-segment"],
)
def test_container_disk_image_reference(image: str, ok: bool) -> None:
    found = causes(vm_with({"containerDisk": {"image": image}}))
    assert [f for f, _ in found] == ([] if ok else [f"{VOLUMES}.containerDisk.image"])


def test_container_disk_path_and_kernel_paths_stay_inside_the_image() -> None:
    # KubeVirt's ValidatePath: absolute, and no relative components.
    assert causes(vm_with({"containerDisk": {"image": "a/b", "path": "/disk/../../x"}})) == [
        (
            f"{VOLUMES}.containerDisk.path",
            f"{VOLUMES}.containerDisk.path must be an absolute path to a file without relative components",
        )
    ]
    kernel = {"image": "..", "kernelPath": "/boot/../../vmlinuz", "initrdPath": "../initrd"}
    assert [f for f, _ in causes(vm_with(kernel=kernel))] == [
        f"{KERNEL}.image",
        f"{KERNEL}.kernelPath",
        f"{KERNEL}.initrdPath",
    ]
