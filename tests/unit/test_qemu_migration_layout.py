"""The QEMU migration layout: written from QMP answers on the source, read back as hostile input on
the target, and turned into the target's boot spec and device placement (pure, no QEMU)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from vmplane.hypervisor.base import DiskSpec, HypervisorError, MachineSpec, NicSpec
from vmplane.hypervisor.migration import MigrationStatus
from vmplane.hypervisor.qemu.argv import Slot, boot_placement, build_argv
from vmplane.hypervisor.qemu.migration import progress_of, status_of, tcp_uri
from vmplane.hypervisor.qemu.migration_layout import incoming_boot, layout_from, parse_layout

MiB = 1 << 20
UUID = "6a1c5c8e-58a5-4c8e-9a55-3d1b2f7c0e11"


def boot_spec() -> MachineSpec:
    return MachineSpec(
        name="default/vm",
        uuid=UUID,
        sockets=1,
        max_sockets=4,
        memory_bytes=256 * MiB,
        max_memory_bytes=1024 * MiB,
        disks=(DiskSpec("root", "/src/root.qcow2"), DiskSpec("cd", "", cdrom=True, bus="sata")),
        nics=(NicSpec("default", "52:54:00:00:00:01"),),
        spare_root_ports=4,
    )


def target_spec() -> MachineSpec:
    """The VMI as the target agent sees it: the hot-plugged disk is in the spec, paths are its own."""
    return MachineSpec(
        name="default/vm",
        uuid=UUID,
        sockets=2,
        max_sockets=4,
        memory_bytes=512 * MiB,
        max_memory_bytes=1024 * MiB,
        disks=(
            DiskSpec("root", "/dst/root.qcow2"),
            DiskSpec("cd", "", cdrom=True, bus="sata"),
            DiskSpec("data", "/dst/data.qcow2"),
        ),
        nics=(NicSpec("default", "52:54:00:00:00:01"),),
    )


def source_layout() -> str:
    """What a source booted from ``boot_spec`` answers after a vCPU, a DIMM and a disk were plugged."""
    placement = boot_placement(boot_spec())
    peripherals = {f"rp{i}": "pcie-root-port" for i in range(placement.root_ports)}
    peripherals |= {
        "scsi0": "virtio-scsi-pci",
        "virtio-serial0": "virtio-serial-pci",
        "disk-root": "virtio-blk-pci",
        "disk-cd": "ide-cd",
        "nic-default": "virtio-net-pci",
        "disk-data": "virtio-blk-pci",
        "cpu-s1-c0-t0": "qemu64-x86_64-cpu",
        "dimm0": "pc-dimm",
    }
    buses = {dev: f"/machine/peripheral/{slot.bus}/{slot.bus}" for dev, slot in placement.slots.items()}
    buses["disk-cd"] = "/machine/unattached/device[15]/ide.0"
    buses["disk-data"] = "/machine/peripheral/rp5/rp5"
    cpus = [
        {
            "type": "qemu64-x86_64-cpu",
            "props": {"socket-id": 0, "core-id": 0, "thread-id": 0},
            "qom-path": "/machine/unattached/device[0]",
        },
        {
            "type": "qemu64-x86_64-cpu",
            "props": {"socket-id": 1, "core-id": 0, "thread-id": 0},
            "qom-path": "/machine/peripheral/cpu-s1-c0-t0",
        },
        {"type": "qemu64-x86_64-cpu", "props": {"socket-id": 2, "core-id": 0, "thread-id": 0}},
    ]
    memory = [{"type": "dimm", "data": {"id": "dimm0", "size": 256 * MiB, "hotplugged": True}}]
    return layout_from(
        boot_spec(),
        hotpluggable_cpus=cpus,
        memory_devices=memory,
        peripherals=peripherals,
        parent_buses=buses,
        scsi_addresses={},
        links={"default": False},
    )


def devices(argv: list[str]) -> list[str]:
    return [value for option, value in itertools.pairwise(argv) if option == "-device"]


def edited(**changes: Any) -> str:
    layout = json.loads(source_layout())
    for path, value in changes.items():
        node = layout
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return json.dumps(layout)


def test_the_layout_lists_what_was_hot_plugged_apart_from_the_boot() -> None:
    layout = parse_layout(source_layout(), target_spec())
    assert (layout.boot.disks, layout.disks, layout.nics) == (("root", "cd"), ("data",), ())
    assert layout.cpus == ({"socket-id": 1, "core-id": 0, "thread-id": 0},)
    assert [(d.index, d.size) for d in layout.dimms] == [(0, 256 * MiB)]
    assert layout.links == {"default": False}


def test_the_target_boots_the_sources_boot_with_its_own_paths() -> None:
    boot, placement = incoming_boot(parse_layout(source_layout(), target_spec()), target_spec())
    assert (boot.sockets, boot.memory_bytes, boot.max_sockets) == (1, 256 * MiB, 4)
    assert [d.path for d in boot.disks] == ["/dst/root.qcow2", ""]
    assert placement.slots["disk-data"] == Slot("rp5")
    assert placement.root_ports == boot_placement(boot_spec()).root_ports


def test_the_target_argv_puts_each_device_in_the_sources_slot() -> None:
    boot, placement = incoming_boot(parse_layout(source_layout(), target_spec()), target_spec())
    target = build_argv(boot, run_dir=Path("/run/x"), accel="tcg", placement=placement, incoming=True)
    source = build_argv(boot_spec(), run_dir=Path("/run/x"), accel="tcg")
    assert devices(target) == devices(source)
    assert target[-2:] == ["-incoming", "defer"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"disks": ["../../etc"]}, "names a disk the VMI does not have"),
        ({"disks": ["other"]}, "names a disk the VMI does not have"),
        ({"slots__disk-data": {"bus": "rp5,addr=0x1"}}, "unknown bus"),
        ({"slots__disk-data": {"bus": "rp29"}}, "beyond"),
        ({"slots__disk-data": {"bus": "rp0"}}, "two devices in one slot"),
        ({"cpus": [{"socket-id": 1, "node-id": 0}]}, "cannot exist"),
        ({"dimms": [{"index": 0, "size": 4096 * MiB}]}, "more memory than the machine's maximum"),
        ({"dimms": [{"index": 0, "size": 200 * MiB}]}, "multiple of 128 MiB"),
        ({"boot__sockets": 8}, "boots 8 sockets of at most 4"),
        ({"boot__max_sockets": 64}, "more than the VMI's maximum"),
        (
            {"boot__memory_bytes": 8192 * MiB, "boot__max_memory_bytes": 16384 * MiB},
            "more memory than the VMI",
        ),
        ({"boot__cores": 2}, "the VMI 1 x 1"),
        ({"boot__root_ports": 99}, "less than or equal"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_hostile_layout_is_refused_naming_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(HypervisorError, match=message):
        parse_layout(edited(**change), target_spec())


def test_a_layout_that_is_not_json_is_refused() -> None:
    with pytest.raises(HypervisorError, match="invalid"):
        parse_layout("-incoming tcp:0:0", target_spec())


def test_migration_uris_take_only_ip_addresses() -> None:
    assert tcp_uri("127.0.0.1", 4444) == "tcp:127.0.0.1:4444"
    assert tcp_uri("::1", 4444) == "tcp:[::1]:4444"
    with pytest.raises(HypervisorError, match="not an IP address"):
        tcp_uri("evil,server=on", 4444)


def test_query_migrate_folds_into_a_progress() -> None:
    reply = {
        "status": "active",
        "ram": {"transferred": 10, "remaining": 90, "total": 100, "dirty-pages-rate": 2, "page-size": 4096},
    }
    jobs = [{"device": "mirror-root", "offset": 5, "len": 50}]
    progress = progress_of(reply, jobs)
    assert (progress.status, progress.transferred_bytes, progress.dirty_bytes_per_second) == (
        MigrationStatus.ACTIVE,
        10,
        8192,
    )
    assert (progress.disk_transferred_bytes, progress.disk_total_bytes) == (5, 50)
    assert [status_of(s) for s in ("none", "setup", "device", "completed", "failed", "cancelled")] == [
        MigrationStatus.NONE,
        MigrationStatus.ACTIVE,
        MigrationStatus.ACTIVE,
        MigrationStatus.COMPLETED,
        MigrationStatus.FAILED,
        MigrationStatus.CANCELLED,
    ]
