"""Property: no spec value, however crafted, adds a QEMU option, an id or a path the builder did not choose.

Hypothesis draws VMIs whose every field the argv builder reads (metadata names, disk/volume names and
serials, claim and DataVolume names, image references and paths inside images, hostDisk paths,
interface names, models and MACs, the machine type, CPU model, firmware UUID, kernel arguments) is
either a well-formed value or arbitrary text full of ``,``, ``=``, ``/``, ``..``, NUL, newlines and
unicode. Each goes the way a VMI goes on the node (``machine_spec`` over ``HostPaths`` on a tmp root,
the driver's ``run_dir``, then ``build_argv``) and must either be refused by one of those, with a
message naming what it refused, or give an argv in which

* every option is one the builder emits, and as many of each as the spec's shape calls for;
* legacy ``key=value`` options carry only the keys the builder writes, JSON ones only its keys;
* every ``id``, ``node-name``, ``drive``, ``netdev`` and ``bus`` is derived from the spec's names by
  ``qemu.naming`` (or a root port / controller the builder numbers);
* every path lies under the VMI's run directory, its volume directories, the image directory or an
  allowed host-disk directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from spec_checks_support import vmi_manifest

from vmplane.agent.machine import machine_spec
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.host.paths import HostPaths, MachineSpecError
from vmplane.hypervisor.base import HypervisorError, MachineSpec
from vmplane.hypervisor.qemu import QemuHypervisor, naming
from vmplane.hypervisor.qemu.argv import MAX_ROOT_PORTS, SANDBOX, boot_root_ports, build_argv

FLAGS = {"-nodefaults", "-no-user-config", "-S"}
VALUED = {
    "-name", "-uuid", "-machine", "-accel", "-cpu", "-smp", "-m", "-display", "-chardev", "-mon", "-serial",
    "-pidfile", "-kernel", "-initrd", "-append", "-device", "-blockdev", "-netdev", "-sandbox", "-vnc",
}  # fmt: skip
#: The keys each legacy option may carry (the first, bare, element is its type or value).
LEGACY_KEYS = {
    "-name": {"guest", "debug-threads"},
    "-smp": {"sockets", "cores", "threads", "maxcpus"},
    "-m": {"size", "slots", "maxmem"},
    "-chardev": {"id", "path", "server", "wait", "logfile", "logappend"},
    "-mon": {"chardev", "mode"},
}
DEVICE_KEYS = {
    "driver",
    "id",
    "bus",
    "chassis",
    "addr",
    "drive",
    "serial",
    "lun",
    "netdev",
    "mac",
    "chardev",
    "name",
}
BLOCKDEV_KEYS = {"driver", "node-name", "read-only", "file"}
BARE = re.compile(r"[A-Za-z0-9._:-]*")

# -- strategies -----------------------------------------------------------------------------------

NASTY = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=",=/.\x00\n :-_aZ9\u00e9\u202e", max_size=16),
    st.sampled_from(
        [
            *(
                "..",
                "../x",
                "../../../../tmp/x/pwn",
                "/etc/shadow",
                "a,b=c",
                "x\ny",
                "",
                ".",
                "a/b",
                "-device",
            ),
            *("pc-q35-7.2,initrd=/etc/shadow", "q35,firmware=/x", "user,hostfwd=tcp::22-:22", "max,+vmx"),
        ]
    ),
)
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)


def mostly(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``valid`` nine times in ten, crafted text otherwise: each field alone is often the odd one out."""
    # Hypothesis favours small integers and bounds: a middle value keeps "crafted" near one in ten.
    return st.integers(0, 9).flatmap(lambda k: NASTY if k == 5 else valid)


NAME = mostly(LABEL)
IMAGE = mostly(st.sampled_from(["local/disk:1", "quay.io/a/b:2"]))
INNER = mostly(st.sampled_from(["/disk/a.qcow2", "/vmlinuz", "/boot/initrd"]))
MACHINE = mostly(st.sampled_from(["q35", "pc-q35-7.2"]))
UUIDS = mostly(st.uuids().map(str))
MODEL = mostly(st.sampled_from(["virtio", "e1000e", "rtl8139"]))
MAC = mostly(st.sampled_from(["02:00:00:00:00:01", "52-54-00-AB-CD-EF"]))
CPU_MODEL = mostly(st.sampled_from(["Haswell", "qemu64", "host-model"]))
SERIAL = mostly(st.from_regex(r"[A-Za-z0-9_.+-]{1,8}", fullmatch=True))
HOST_PATH = mostly(st.sampled_from(["/srv/hostdisks/a.img", "/srv/hostdisks/sub/b.img"]))


@st.composite
def volume(draw: st.DrawFn, name: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["emptyDisk", "pvc", "dataVolume", "containerDisk", "cloudInit", "hostDisk"]))
    if kind == "emptyDisk":
        return {"name": name, "emptyDisk": {"capacity": "1Mi"}}
    if kind == "pvc":
        return {"name": name, "persistentVolumeClaim": {"claimName": draw(NAME)}}
    if kind == "dataVolume":
        return {"name": name, "dataVolume": {"name": draw(NAME)}}
    if kind == "containerDisk":
        source = {"image": draw(IMAGE), **({"path": p} if (p := draw(st.none() | INNER)) else {})}
        return {"name": name, "containerDisk": source}
    if kind == "cloudInit":
        return {"name": name, "cloudInitNoCloud": {"userData": draw(st.text(max_size=8))}}
    path = draw(
        st.one_of(st.just("/srv/hostdisks/a.img"), st.builds(lambda s: "/srv/hostdisks/" + s, NASTY), NASTY)
    )
    return {"name": name, "hostDisk": {"path": path, "type": "Disk"}}


@st.composite
def vmis(draw: st.DrawFn) -> dict[str, Any]:
    disk_names = draw(st.lists(NAME, max_size=3, unique=True))
    nic_names = draw(st.lists(NAME, max_size=2, unique=True))
    disks = [
        {
            "name": n,
            "disk": {"bus": draw(st.sampled_from(["virtio", "sata", "scsi"]))},
            "serial": draw(st.none() | NASTY),
        }
        for n in disk_names
    ]
    interfaces = [
        {
            "name": n,
            "masquerade": {},
            "model": draw(MODEL),
            **({"macAddress": m} if (m := draw(st.none() | MAC)) else {}),
        }
        for n in nic_names
    ]
    domain: dict[str, Any] = {
        "memory": {"guest": "128Mi"},
        "devices": {
            "disks": [{k: v for k, v in d.items() if v is not None} for d in disks],
            "interfaces": interfaces,
        },
        "machine": {"type": draw(MACHINE)},
        "cpu": {"sockets": 1, "model": draw(CPU_MODEL)},
        "firmware": {"uuid": draw(UUIDS)},
    }
    if draw(st.booleans()):
        kernel = {"image": draw(IMAGE), "kernelPath": draw(INNER), "initrdPath": draw(INNER)}
        args = draw(mostly(st.just("console=ttyS0 quiet")) | NASTY)
        domain["firmware"]["kernelBoot"] = {"container": kernel, "kernelArgs": args}
    spec = {
        "domain": domain,
        "volumes": [draw(volume(n)) for n in disk_names],
        "networks": [{"name": n, "pod": {}} for n in nic_names],
    }
    return vmi_manifest(
        draw(NAME) or "x", spec, namespace=draw(st.one_of(st.just("default"), NAME)) or "default"
    )


# -- the argv's shape -----------------------------------------------------------------------------


def options(argv: list[str]) -> Iterator[tuple[str, str | None]]:
    """``(option, value)`` pairs, walking the argv as QEMU does (flags take no value)."""
    i = 1
    while i < len(argv):
        option = argv[i]
        assert option in FLAGS | VALUED, f"unexpected option {option!r}"
        if option in FLAGS:
            yield option, None
            i += 1
        else:
            assert i + 1 < len(argv), f"{option} lost its value"
            yield option, argv[i + 1]
            i += 2


def legacy(value: str) -> list[str]:
    """A ``key=value,...`` option split as QEMU's parser splits it (``,,`` is a literal comma)."""
    return [part.replace("\x00", ",") for part in value.replace(",,", "\x00").split(",")]


def under(path: str, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(os.path.realpath(root)) for root in roots)


def check_argv(argv: list[str], spec: MachineSpec, *, run_dir: Path, paths: HostPaths) -> None:
    namespace, _, name = spec.name.partition("_")
    roots = [
        run_dir,
        paths.root / "volumes" / namespace / "claims",
        paths.root / "volumes" / namespace / "vmis" / name,
        paths.images,
        *(paths.host_disk_dirs or ()),
    ]
    ports = {naming.root_port_id(i) for i in range(MAX_ROOT_PORTS)}
    disk_ids = {naming.disk_device_id(d.name) for d in spec.disks}
    nic_ids = {naming.nic_device_id(n.name) for n in spec.nics}
    nodes = {naming.drive_node(d.name) for d in spec.disks}
    netdevs = {naming.netdev_id(n.name) for n in spec.nics}
    buses = ports | {"pcie.0", "scsi0.0", "virtio-serial0.0"} | {f"ide.{i}" for i in range(6)}
    seen: dict[str, int] = {}
    for option, value in options(argv):
        seen[option] = seen.get(option, 0) + 1
        if value is None:
            continue
        assert "\x00" not in value
        if option in ("-device", "-blockdev", "-netdev"):
            obj = json.loads(value)
            if option == "-device":
                assert set(obj) <= DEVICE_KEYS
                assert obj["id"] in ports | disk_ids | nic_ids | {"scsi0", "virtio-serial0", "guest-agent"}
                assert obj.get("bus", "pcie.0") in buses
                assert obj.get("chardev", "guest-agent") == "guest-agent"
                assert obj.get("name", "org.qemu.guest_agent.0") == "org.qemu.guest_agent.0"
                assert obj.get("drive", next(iter(nodes), None)) in nodes | {None}
                assert obj.get("netdev", next(iter(netdevs), None)) in netdevs | {None}
            elif option == "-blockdev":
                assert set(obj) <= BLOCKDEV_KEYS
                assert obj["node-name"] in nodes
                assert set(obj["file"]) == {"driver", "filename", "read-only"}
                assert under(obj["file"]["filename"], roots), obj["file"]["filename"]
            else:
                assert obj == {"type": "user", "id": obj["id"]}
                assert obj["id"] in netdevs
        elif option in LEGACY_KEYS:
            first, *rest = legacy(value)
            keys = {part.partition("=")[0] for part in rest}
            assert keys <= LEGACY_KEYS[option], (option, value)
            if option == "-chardev":
                assert first in ("socket", "file")
                paths = [p.partition("=")[2] for p in rest if p.startswith(("path=", "logfile="))]
                assert paths, value
                assert all(under(path, [run_dir]) for path in paths), value
        elif option in ("-machine", "-cpu", "-uuid", "-accel", "-display", "-serial"):
            assert BARE.fullmatch(value), (option, value)  # no option syntax at all
        elif option == "-sandbox":
            assert value == SANDBOX
        elif option == "-vnc":
            # A unix socket in the run directory: never a TCP port.
            assert value.startswith("unix:"), value
            assert under(value.removeprefix("unix:"), [run_dir]), value
        elif option in ("-pidfile", "-kernel", "-initrd"):
            assert under(value, [run_dir] if option == "-pidfile" else roots), (option, value)
    assert seen.get("-blockdev", 0) == len(spec.disks)
    assert seen.get("-netdev", 0) == len(spec.nics)
    scsi = 1  # the SCSI controller every guest boots with, for hot-plugged scsi disks
    assert (
        seen["-device"]
        == boot_root_ports(spec) + spec.spare_root_ports + len(spec.disks) + len(spec.nics) + scsi + 2
    )  # + the guest agent's virtio-serial controller and its port
    assert seen.get("-kernel", 0) == (spec.kernel_boot is not None)
    assert seen["-sandbox"] == 1


# -- the property ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> tuple[HostPaths, QemuHypervisor]:
    root = tmp_path_factory.mktemp("argv")
    paths = HostPaths(root / "data", host_disk_dirs=(Path("/srv/hostdisks"),))
    driver = QemuHypervisor(base_dir=root / "machines", accel="tcg", on_change=lambda _: None)
    return paths, driver


def refusal_names_a_field(message: str) -> bool:
    return any(
        word in message
        for word in ("spec.", "metadata.", "machine", "uuid", "CPU model", "NIC", "MAC", "NUL")
    )


Outcome = tuple[MachineSpec, Path, list[str]] | str


def node_outcome(wire: dict[str, Any], paths: HostPaths, driver: QemuHypervisor) -> Outcome | None:
    """What the node makes of ``wire``: its machine, run directory and argv, or the refusal's message
    (None: the models refuse it before the agent sees it)."""
    try:
        vmi = VirtualMachineInstance.model_validate(wire)
    except ValidationError:
        return None
    try:
        spec = machine_spec(vmi, resolver=paths)
        run_dir = driver.run_dir(spec.name)
        return spec, run_dir, build_argv(spec, run_dir=run_dir, accel="tcg")
    except (MachineSpecError, HypervisorError, ValueError) as err:
        return str(err)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wire=vmis())
def test_no_spec_value_adds_an_option_id_or_path(
    host: tuple[HostPaths, QemuHypervisor], wire: dict[str, Any]
) -> None:
    outcome = node_outcome(wire, *host)
    if isinstance(outcome, str):
        assert refusal_names_a_field(outcome), outcome
    elif outcome is not None:
        spec, run_dir, argv = outcome
        check_argv(argv, spec, run_dir=run_dir, paths=host[0])


def test_a_well_formed_vmi_reaches_the_argv() -> None:
    """The property is not vacuous: a plain VMI of every volume kind gets through to an argv."""
    spec = {
        "domain": {
            "memory": {"guest": "128Mi"},
            "devices": {
                "disks": [{"name": n, "serial": "s-1"} for n in ("a", "b", "c", "d", "e")],
                "interfaces": [{"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:01"}],
            },
            "machine": {"type": "pc-q35-7.2"},
            "firmware": {"uuid": "6a1a24a1-4061-4607-8bf4-a3963d0c5895"},
        },
        "volumes": [
            {"name": "a", "emptyDisk": {"capacity": "1Mi"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "c", "containerDisk": {"image": "local/disk:1", "path": "/disk/a.qcow2"}},
            {"name": "d", "cloudInitNoCloud": {"userData": "#cloud-config"}},
            {"name": "e", "hostDisk": {"path": "/srv/hostdisks/e.img", "type": "Disk"}},
        ],
        "networks": [{"name": "default", "pod": {}}],
    }
    paths = HostPaths(Path("/var/lib/vmplane"), host_disk_dirs=(Path("/srv/hostdisks"),))
    machine = machine_spec(VirtualMachineInstance.model_validate(vmi_manifest("vm", spec)), resolver=paths)
    run_dir = Path("/run/vmplane/default_vm")
    check_argv(build_argv(machine, run_dir=run_dir, accel="tcg"), machine, run_dir=run_dir, paths=paths)
