"""``build_argv``: the QEMU command line for a MachineSpec (pure, no QEMU needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmplane.hypervisor.base import DiskSpec, KernelBoot, MachineSpec, NicSpec
from vmplane.hypervisor.qemu.argv import DIMM_SLOTS, MAX_ROOT_PORTS, build_argv

RUN = Path("/run/vmplane/vm1")
MiB = 1 << 20
GiB = 1 << 30


def spec(**changes: object) -> MachineSpec:
    base: dict[str, object] = {"name": "vm1", "uuid": "00000000-0000-4000-8000-000000000001", "sockets": 1}
    return MachineSpec(**(base | changes))  # type: ignore[arg-type]


def option(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag``."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def devices(argv: list[str]) -> list[dict[str, object]]:
    return [json.loads(v) for v in option(argv, "-device")]


def device(argv: list[str], device_id: str) -> dict[str, object]:
    (found,) = [d for d in devices(argv) if d.get("id") == device_id]
    return found


@pytest.mark.parametrize(
    ("changes", "smp"),
    [
        pytest.param({}, "1,sockets=1,cores=1,threads=1,maxcpus=1", id="no-headroom"),
        pytest.param({"max_sockets": 4}, "1,sockets=4,cores=1,threads=1,maxcpus=4", id="sockets-are-max"),
        pytest.param(
            {"sockets": 2, "cores": 2, "threads": 2, "max_sockets": 3},
            "8,sockets=3,cores=2,threads=2,maxcpus=12",
            id="cores-threads",
        ),
        pytest.param(
            {"sockets": 2, "max_sockets": 2}, "2,sockets=2,cores=1,threads=1,maxcpus=2", id="max-equal"
        ),
    ],
)
def test_smp_puts_the_boot_count_first_and_max_sockets_in_sockets(
    changes: dict[str, object], smp: str
) -> None:
    assert option(build_argv(spec(**changes), run_dir=RUN, accel="tcg"), "-smp") == [smp]


@pytest.mark.parametrize(
    ("changes", "memory"),
    [
        pytest.param({}, "size=128M", id="default"),
        pytest.param({"memory_bytes": GiB}, "size=1024M", id="no-max"),
        pytest.param({"memory_bytes": GiB, "max_memory_bytes": GiB}, "size=1024M", id="max-equal"),
        pytest.param(
            {"memory_bytes": 256 * MiB, "max_memory_bytes": 4 * GiB},
            f"size=256M,slots={DIMM_SLOTS},maxmem=4096M",
            id="hotplug",
        ),
    ],
)
def test_memory_reserves_dimm_slots_up_to_max(changes: dict[str, object], memory: str) -> None:
    assert option(build_argv(spec(**changes), run_dir=RUN, accel="tcg"), "-m") == [memory]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"sockets": 3, "max_sockets": 2}, "max_sockets 2 is below sockets 3", id="max-sockets-low"
        ),
        pytest.param({"sockets": 0}, "sockets must be at least 1", id="zero-sockets"),
        pytest.param({"cores": 0}, "cores must be at least 1", id="zero-cores"),
        pytest.param({"memory_bytes": 100 * MiB + 1}, "multiple of 1 MiB", id="unaligned-memory"),
        pytest.param(
            {"memory_bytes": GiB, "max_memory_bytes": 512 * MiB}, "below memory_bytes", id="max-mem-low"
        ),
        pytest.param({"spare_root_ports": MAX_ROOT_PORTS + 1}, "root ports requested", id="too-many-ports"),
        pytest.param({"machine": "pc"}, "only q35", id="i440fx"),
        pytest.param(
            {"nics": (NicSpec("n", "52:54:00:00:00:01", model="pcnet"),)}, "unsupported model", id="nic-model"
        ),
        pytest.param(
            {"disks": tuple(DiskSpec(f"s{i}", f"/d{i}", bus="sata") for i in range(7))},
            "SATA",
            id="sata-ports",
        ),
    ],
)
def test_specs_qemu_would_refuse_are_rejected_with_the_field(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_argv(spec(**changes), run_dir=RUN, accel="tcg")


def test_long_run_dir_is_refused_before_qemu_fails_to_bind() -> None:
    with pytest.raises(ValueError, match="longer than"):
        build_argv(spec(), run_dir=Path("/x" * 60), accel="tcg")


@pytest.mark.parametrize(
    ("accel", "cpu_model", "expected"),
    [
        pytest.param("kvm", None, ["host"], id="kvm-host"),
        pytest.param("tcg", None, [], id="tcg-default"),
        pytest.param("tcg", "Skylake-Server", ["Skylake-Server"], id="explicit"),
    ],
)
def test_accel_and_cpu_model(accel: str, cpu_model: str | None, expected: list[str]) -> None:
    argv = build_argv(spec(cpu_model=cpu_model), run_dir=RUN, accel=accel)  # type: ignore[arg-type]
    assert option(argv, "-accel") == [accel]
    assert option(argv, "-cpu") == expected


def test_qemus_own_directory_holds_qmp_serial_vnc_console_log_and_pidfile_and_guest_starts_paused() -> None:
    argv = build_argv(spec(name="ns/a,b"), run_dir=Path("/r,un"), accel="tcg", qemu_binary="/opt/qemu")
    assert argv[0] == "/opt/qemu"
    assert "-S" in argv
    assert "-daemonize" not in argv
    assert "-no-reboot" not in argv
    assert option(argv, "-display") == ["none"]
    assert option(argv, "-name") == ["guest=ns/a,,b,debug-threads=on"]
    assert option(argv, "-chardev") == [
        "socket,id=qmp,path=/r,,un/qemu/qmp.sock,server=on,wait=off",
        "socket,id=console,path=/r,,un/qemu/serial.sock,server=on,wait=off,"
        "logfile=/r,,un/qemu/console.log,logappend=on",
        "socket,id=guest-agent,path=/r,,un/qemu/guest-agent.sock,server=on,wait=off",
    ]
    assert option(argv, "-vnc") == ["unix:/r,,un/qemu/vnc.sock"]
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert option(argv, "-serial") == ["chardev:console"]
    assert option(argv, "-pidfile") == ["/r,un/qemu/qemu.pid"]


def test_qemu_runs_under_its_seccomp_sandbox_with_every_deny() -> None:
    argv = build_argv(spec(), run_dir=RUN, accel="tcg")
    assert option(argv, "-sandbox") == [
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ]
    assert "-runas" not in argv


@pytest.mark.parametrize(
    ("boot", "expected"),
    [
        pytest.param(None, {}, id="none"),
        pytest.param(KernelBoot("/k"), {"-kernel": ["/k"]}, id="kernel-only"),
        pytest.param(
            KernelBoot("/k", "/i", "console=ttyS0 quiet"),
            {"-kernel": ["/k"], "-initrd": ["/i"], "-append": ["console=ttyS0 quiet"]},
            id="full",
        ),
    ],
)
def test_kernel_boot(boot: KernelBoot | None, expected: dict[str, list[str]]) -> None:
    argv = build_argv(spec(kernel_boot=boot), run_dir=RUN, accel="tcg")
    for flag in ("-kernel", "-initrd", "-append"):
        assert option(argv, flag) == expected.get(flag, [])


@pytest.mark.parametrize(
    ("changes", "ports"),
    [
        # Every guest has the SCSI controller disks hot-plug to and the guest agent's serial
        # controller, each on a port of its own.
        pytest.param({"spare_root_ports": 0}, 2, id="none"),
        pytest.param({}, 8 + 2, id="default-spares"),
        pytest.param(
            {
                "spare_root_ports": 2,
                "disks": (
                    DiskSpec("a", "/a"),
                    DiskSpec("cd", "/cd", cdrom=True),
                    DiskSpec("s", "/s", bus="scsi"),
                ),
                "nics": (NicSpec("n", "52:54:00:00:00:01"),),
            },
            # spares + virtio disk + scsi controller + NIC + serial controller; the CD-ROM is on SATA
            2 + 1 + 1 + 1 + 1,
            id="boot-devices-get-their-own",
        ),
    ],
)
def test_one_root_port_per_pcie_device_plus_spares(changes: dict[str, object], ports: int) -> None:
    argv = build_argv(spec(**changes), run_dir=RUN, accel="tcg")
    root_ports = [d for d in devices(argv) if d["driver"] == "pcie-root-port"]
    assert [p["id"] for p in root_ports] == [f"rp{i}" for i in range(ports)]
    assert len({p["chassis"] for p in root_ports}) == ports
    assert len({p["addr"] for p in root_ports}) == ports
    assert all(p["bus"] == "pcie.0" for p in root_ports)


@pytest.mark.parametrize(
    ("disk", "expected_device", "expected_node"),
    [
        pytest.param(
            DiskSpec("root", "/img/root,1.qcow2", serial="S1"),
            {"driver": "virtio-blk-pci", "bus": "rp0", "serial": "S1"},
            {"driver": "qcow2", "read-only": False, "filename": "/img/root,1.qcow2"},
            id="virtio",
        ),
        pytest.param(
            DiskSpec("ro", "/img/ro.raw", format="raw", readonly=True),
            {"driver": "virtio-blk-pci", "bus": "rp0"},
            {"driver": "raw", "read-only": True, "filename": "/img/ro.raw"},
            id="readonly",
        ),
        pytest.param(
            DiskSpec("cd", "/img/cd.iso", format="raw", cdrom=True),
            {"driver": "ide-cd", "bus": "ide.0"},
            {"driver": "raw", "read-only": True, "filename": "/img/cd.iso"},
            id="cdrom-on-sata",
        ),
        pytest.param(
            DiskSpec("s", "/img/s.qcow2", bus="sata"),
            {"driver": "ide-hd", "bus": "ide.0"},
            {"driver": "qcow2", "read-only": False, "filename": "/img/s.qcow2"},
            id="sata",
        ),
        pytest.param(
            DiskSpec("s", "/img/s.qcow2", bus="scsi"),
            {"driver": "scsi-hd", "bus": "scsi0.0", "lun": 0},
            {"driver": "qcow2", "read-only": False, "filename": "/img/s.qcow2"},
            id="scsi",
        ),
    ],
)
def test_disks(disk: DiskSpec, expected_device: dict[str, object], expected_node: dict[str, object]) -> None:
    argv = build_argv(spec(disks=(disk,)), run_dir=RUN, accel="tcg")
    got = device(argv, f"disk-{disk.name}")
    assert got == {"id": f"disk-{disk.name}", "drive": f"drive-{disk.name}"} | expected_device
    (node,) = [json.loads(v) for v in option(argv, "-blockdev")]
    assert node["node-name"] == f"drive-{disk.name}"
    assert {
        "driver": node["driver"],
        "read-only": node["read-only"],
        "filename": node["file"]["filename"],
    } == (expected_node)


def test_long_disk_names_get_node_names_qemu_accepts() -> None:
    name = "a-disk-name-that-is-much-longer-than-thirty-one-characters"
    argv = build_argv(spec(disks=(DiskSpec(name, "/x"),)), run_dir=RUN, accel="tcg")
    node = device(argv, f"disk-{name}")["drive"]
    assert isinstance(node, str)
    assert len(node) <= 31
    assert [json.loads(v)["node-name"] for v in option(argv, "-blockdev")] == [node]


@pytest.mark.parametrize(
    ("model", "driver"),
    [pytest.param("virtio", "virtio-net-pci", id="virtio"), pytest.param("e1000e", "e1000e", id="e1000e")],
)
def test_nics_use_user_netdevs_on_root_ports(model: str, driver: str) -> None:
    nics = (NicSpec("default", "52:54:00:00:00:01", model=model), NicSpec("b", "52:54:00:00:00:02"))
    argv = build_argv(spec(nics=nics), run_dir=RUN, accel="tcg")
    assert [json.loads(v) for v in option(argv, "-netdev")] == [
        {"type": "user", "id": "net-default"},
        {"type": "user", "id": "net-b"},
    ]
    assert device(argv, "nic-default") == {
        "driver": driver,
        "id": "nic-default",
        "netdev": "net-default",
        "mac": "52:54:00:00:00:01",
        "bus": "rp0",
    }
    assert device(argv, "nic-b")["bus"] == "rp1"


def test_build_argv_is_pure() -> None:
    s = spec(disks=(DiskSpec("a", "/a"),), nics=(NicSpec("n", "52:54:00:00:00:01"),), max_sockets=2)
    assert build_argv(s, run_dir=RUN, accel="tcg") == build_argv(s, run_dir=RUN, accel="tcg")


def test_an_empty_cdrom_drive_has_a_device_and_no_medium_node() -> None:
    argv = build_argv(
        spec(disks=(DiskSpec("cdrom", "", cdrom=True, readonly=True, bus="sata"),)), run_dir=RUN, accel="tcg"
    )
    assert device(argv, "disk-cdrom") == {"driver": "ide-cd", "id": "disk-cdrom", "bus": "ide.0"}
    assert not any("cdrom" in node for node in option(argv, "-blockdev"))


def test_every_guest_gets_the_guest_agent_channel_on_a_virtio_serial_controller_of_its_own_root_port() -> (
    None
):
    devices = [json.loads(d) for d in option(build_argv(spec(), run_dir=RUN, accel="tcg"), "-device")]
    controller = next(d for d in devices if d["driver"] == "virtio-serial-pci")
    ports = {d["id"] for d in devices if d["driver"] == "pcie-root-port"}
    channel = next(d for d in devices if d["driver"] == "virtserialport")
    assert (controller["bus"] in ports, channel) == (
        True,
        {
            "driver": "virtserialport",
            "id": "guest-agent",
            "bus": f"{controller['id']}.0",
            "chardev": "guest-agent",
            "name": "org.qemu.guest_agent.0",
        },
    )
