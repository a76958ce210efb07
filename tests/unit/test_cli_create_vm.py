"""``vmplane create vm``'s manifest, as ``virtctl create vm`` writes it (``cli.create_vm.vm_manifest``)."""

from __future__ import annotations

import pytest

from vmplane.cli.create_vm import ParseError, vm_manifest


def test_instancetype_and_preference_default_to_the_cluster_kinds() -> None:
    spec = vm_manifest("a", instancetype="u1.small", preference="fedora")["spec"]
    assert spec["instancetype"] == {"name": "u1.small"}
    assert spec["preference"] == {"name": "fedora"}
    assert "memory" not in spec["template"]["spec"]["domain"]


def test_a_kind_prefix_names_the_kind() -> None:
    spec = vm_manifest("a", instancetype="virtualmachineinstancetypes/mine")["spec"]
    assert spec["instancetype"] == {"kind": "VirtualMachineInstancetype", "name": "mine"}


def test_without_instancetype_the_guest_gets_virtctls_memory() -> None:
    domain = vm_manifest("a")["spec"]["template"]["spec"]["domain"]
    assert domain["memory"] == {"guest": "512Mi"}


def test_container_disks_become_disks_and_volumes() -> None:
    template = vm_manifest("a", container_disks=("src:img:1,bootorder:1", "src:img:2,name:data"))["spec"][
        "template"
    ]
    assert template["spec"]["domain"]["devices"]["disks"] == [
        {"name": "a-containerdisk-0", "disk": {}, "bootOrder": 1},
        {"name": "data", "disk": {}},
    ]
    assert [v["containerDisk"]["image"] for v in template["spec"]["volumes"]] == ["img:1", "img:2"]


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"instancetype": "pods/x"}, "--instancetype"),
        ({"preference": "virtualmachineclusterpreference/"}, "--preference"),
        ({"container_disks": ("name:x",)}, "--volume-containerdisk"),
        ({"container_disks": ("src:x,bootorder:0",)}, "--volume-containerdisk"),
        ({"container_disks": ("src:x,size:1Gi",)}, "--volume-containerdisk"),
    ],
    ids=["bad-kind", "no-name", "no-src", "bad-bootorder", "unknown-key"],
)
def test_bad_flag_values_are_refused_naming_the_flag(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(ParseError, match=flag):
        vm_manifest("a", **kwargs)  # type: ignore[arg-type]
