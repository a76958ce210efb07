"""``agent.machine``: a VMI translated into the MachineSpec a Hypervisor boots."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vmplane.agent.machine import interface_mac, machine_name, machine_spec, vmi_key_of
from vmplane.api.domain import Interface
from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceSpec
from vmplane.controller.boot import MACHINE_FINALIZER as CONTROLLER_FINALIZER
from vmplane.host.paths import DirectoryVolumeResolver, HostPaths, MachineSpecError, VolumeError
from vmplane.hypervisor.base import DiskSpec, KernelBoot, NicSpec
from vmplane.testing.builders import container_disk, disk, interface, network, pvc, vm_spec

GiB = 1 << 30
ROOT = Path("/data")
PATHS = HostPaths(ROOT)


def vmi(spec: VirtualMachineInstanceSpec | dict[str, Any], *, uid: str = "uid-1") -> VirtualMachineInstance:
    wire = spec.to_wire() if isinstance(spec, VirtualMachineInstanceSpec) else spec
    return VirtualMachineInstance.model_validate(
        {"metadata": {"name": "vm", "namespace": "ns", "uid": uid}, "spec": wire}
    )


def test_names_round_trip_and_the_finalizer_matches_the_controllers() -> None:
    assert machine_name("ns", "vm") == "ns_vm"
    assert vmi_key_of(machine_name("ns", "my-vm.x")) == ("ns", "my-vm.x")
    assert MACHINE_FINALIZER == CONTROLLER_FINALIZER
    assert DirectoryVolumeResolver is HostPaths


def test_cpu_memory_and_identity() -> None:
    spec = machine_spec(
        vmi(
            vm_spec(
                sockets=2,
                cores=2,
                threads=1,
                max_sockets=8,
                guest="2Gi",
                max_guest="8Gi",
                cpu_model="Haswell",
            )
        ),
        resolver=PATHS,
    )
    # "uid-1" is no UUID (the store's uids are): the guest gets a UUID derived from it, stably.
    assert (spec.name, spec.uuid) == ("ns_vm", str(uuid.uuid5(uuid.NAMESPACE_URL, "vmplane:uid:uid-1")))
    assert (spec.sockets, spec.cores, spec.threads, spec.max_sockets) == (2, 2, 1, 8)
    assert (spec.memory_bytes, spec.max_memory_bytes) == (2 * GiB, 8 * GiB)
    assert (spec.machine, spec.cpu_model) == ("q35", "Haswell")
    assert (spec.disks, spec.nics, spec.kernel_boot) == ((), (), None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"firmware_uuid": "1b6e4d2a-0000-4000-8000-000000000001"},
            {"uuid": "1b6e4d2a-0000-4000-8000-000000000001"},
        ),
        ({"max_guest": None}, {"max_memory_bytes": None}),
        ({"guest": "1Gi", "max_guest": "1Gi"}, {"max_memory_bytes": None}),
        (
            {"sockets": None, "cores": None, "threads": None},
            {"sockets": 1, "cores": 1, "threads": 1, "max_sockets": 0},
        ),
        ({"cpu_model": "host-passthrough"}, {"cpu_model": None}),
        ({"cpu_model": "host-model"}, {"cpu_model": None}),
        ({"machine_type": "pc-q35-7.2"}, {"machine": "pc-q35-7.2"}),
        ({"guest": None, "requests": {"memory": "512Mi"}}, {"memory_bytes": 512 << 20}),
        (
            {"guest": "1024M", "max_guest": "4096M"},
            {"memory_bytes": 977 << 20, "max_memory_bytes": 3907 << 20},
        ),
    ],
    ids=[
        "firmware-uuid",
        "no-max-guest",
        "max-equals-guest",
        "no-topology",
        "host-passthrough",
        "host-model",
        "machine",
        "memory-request",
        "decimal-memory-rounds-up-to-whole-mib",
    ],
)
def test_defaults_and_overrides(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = machine_spec(vmi(vm_spec(**fields)), resolver=PATHS)
    assert {k: getattr(spec, k) for k in expected} == expected


def test_disks_follow_the_volume_layout() -> None:
    spec = vm_spec(
        disks=[
            disk("root"),
            disk("data"),
            disk("iso", cdrom=True),
            disk("scratch", bus="scsi"),
            disk("seed"),
            disk("host"),
        ],
        volumes=[
            container_disk("root", image="quay.io/containerdisks/fedora:40"),
            pvc("data", claim="data-claim", hotpluggable=True),
            pvc("iso", data_volume=True),
        ],
    ).to_wire()
    spec["volumes"] += [
        {"name": "scratch", "emptyDisk": {"capacity": "1Gi"}},
        {"name": "seed", "cloudInitNoCloud": {"userData": "#cloud-config"}},
        {"name": "host", "hostDisk": {"path": "/srv/disk.img", "type": "Disk"}},
    ]
    disks = machine_spec(vmi(spec), resolver=PATHS).disks
    here = ROOT / "volumes" / "ns" / "vmis" / "vm"
    assert disks == (
        DiskSpec("root", str(here / "root.overlay.qcow2")),
        DiskSpec("data", str(ROOT / "volumes/ns/claims/data-claim.qcow2"), hotpluggable=True),
        DiskSpec("iso", str(ROOT / "volumes/ns/claims/iso-pvc.qcow2"), bus="sata", cdrom=True, readonly=True),
        DiskSpec("scratch", str(here / "scratch.qcow2"), bus="scsi"),
        DiskSpec("seed", str(here / "seed.cidata.iso"), format="raw", readonly=True),
        DiskSpec("host", "/srv/disk.img", format="raw"),
    )
    assert (
        PATHS.image("quay.io/containerdisks/fedora:40")
        == ROOT / "images" / "quay.io_containerdisks_fedora_40"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"domain": {"devices": {"disks": [{"name": "x"}]}, "memory": {"guest": "1Gi"}}},
            "disks[name=x]: no volume",
        ),
        (
            {
                "domain": {
                    "devices": {"disks": [{"name": "x", "disk": {"bus": "usb"}}]},
                    "memory": {"guest": "1Gi"},
                },
                "volumes": [{"name": "x", "emptyDisk": {"capacity": "1Gi"}}],
            },
            "bus 'usb' is not supported",
        ),
        (
            {
                "domain": {"devices": {"disks": [{"name": "x"}]}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "x"}],
            },
            "volumes[name=x]: no source this host supports",
        ),
        ({"domain": {"devices": {}}}, "spec.domain.memory.guest: not set"),
        (
            {"domain": {"cpu": {"sockets": 4, "maxSockets": 2}, "memory": {"guest": "1Gi"}}},
            "maxSockets: 2 is below",
        ),
    ],
    ids=["disk-without-volume", "usb-bus", "volume-without-source", "no-memory", "max-below-sockets"],
)
def test_what_cannot_be_translated_is_named(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(MachineSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        machine_spec(vmi(spec), resolver=PATHS)


def test_nics_with_stable_macs_and_link_state() -> None:
    spec = vm_spec(
        interfaces=[
            interface("default", binding="masquerade"),
            interface("blue", mac="02-AA-BB-CC-DD-EE", model="e1000e"),
            interface("down", state="down"),
            interface("gone", state="absent"),
        ],
        networks=[
            network("default"),
            network("blue", nad="b"),
            network("down", nad="d"),
            network("gone", nad="g"),
        ],
    )
    nics = machine_spec(vmi(spec), resolver=PATHS).nics
    default_mac = interface_mac("uid-1", Interface(name="default"))
    assert nics == (
        NicSpec("default", default_mac),
        NicSpec("blue", "02:aa:bb:cc:dd:ee", model="e1000e"),
        NicSpec("down", interface_mac("uid-1", Interface(name="down")), link_up=False),
    )
    first = int(default_mac.split(":")[0], 16)
    assert first & 0b11 == 0b10  # locally administered, unicast
    assert machine_spec(vmi(spec), resolver=PATHS).nics == nics  # stable
    assert machine_spec(vmi(spec, uid="uid-2"), resolver=PATHS).nics[0].mac != default_mac


def test_kernel_boot_comes_from_the_image_directory() -> None:
    wire = vm_spec().to_wire()
    wire["domain"]["firmware"] = {
        "kernelBoot": {
            "kernelArgs": "console=ttyS0",
            "container": {
                "image": "local/guest:1",
                "kernelPath": "/boot/vmlinuz",
                "initrdPath": "/boot/initrd.img",
            },
        }
    }
    boot = machine_spec(vmi(wire), resolver=PATHS).kernel_boot
    image = ROOT / "images" / "local_guest_1"
    assert boot == KernelBoot(str(image / "boot/vmlinuz"), str(image / "boot/initrd.img"), "console=ttyS0")
    wire["domain"]["firmware"] = {"kernelBoot": {"kernelArgs": "quiet"}}
    with pytest.raises(VolumeError, match=r"kernelBoot\.container"):
        machine_spec(vmi(wire), resolver=PATHS)


def test_paths_is_the_resolvers_older_name() -> None:
    spec = vmi(vm_spec(disks=[disk("root")], volumes=[container_disk("root")]))
    assert machine_spec(spec, paths=PATHS) == machine_spec(spec, resolver=PATHS)
    with pytest.raises(TypeError):
        machine_spec(spec)


def test_a_cdrom_with_no_volume_is_an_empty_drive() -> None:
    spec = vm_spec(
        disks=[disk("root"), disk("cdrom", cdrom=True)], volumes=[container_disk("root", image="img")]
    )
    disks = machine_spec(vmi(spec.to_wire()), resolver=PATHS).disks
    assert disks[1] == DiskSpec("cdrom", "", bus="sata", cdrom=True, readonly=True)
    assert disks[1].empty


def test_a_disk_with_no_volume_is_still_refused() -> None:
    spec = vm_spec(disks=[disk("root"), disk("lost")], volumes=[container_disk("root", image="img")])
    with pytest.raises(MachineSpecError, match=r"disks\[name=lost\]: no volume of that name"):
        machine_spec(vmi(spec.to_wire()), resolver=PATHS)
