"""The QEMU driver's status rules: ObservedMachine from QMP replies, and what a QEMU exit means."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from vmplane.hypervisor.base import MachineState, ObservedDisk, ObservedNic
from vmplane.hypervisor.qemu import naming
from vmplane.hypervisor.qemu.observe import STATUS_TABLE, exit_outcome, observed_machine, peripheral_types

MiB = 1 << 20


def cpu(socket: int, core: int = 0, thread: int = 0) -> dict[str, Any]:
    return {"cpu-index": socket, "props": {"socket-id": socket, "core-id": core, "thread-id": thread}}


PERIPHERALS = [
    {"name": "type", "type": "string"},
    {"name": "rp0", "type": "child<pcie-root-port>"},
    {"name": "disk-root", "type": "child<virtio-blk-pci>"},
    {"name": "disk-cd", "type": "child<ide-cd>"},
    {"name": "nic-default", "type": "child<virtio-net-pci>"},
    {"name": "nic-b", "type": "child<virtio-net-pci>"},
    {"name": "dimm0", "type": "child<pc-dimm>"},
]

BLOCK = [
    {
        "device": "",
        "qdev": "/machine/peripheral/disk-root/virtio-backend",
        "inserted": {"file": "/img/root.qcow2", "image": {"filename": "/img/root.qcow2"}},
    },
    {"device": "", "qdev": "disk-cd", "inserted": {"file": "/img/cd.iso"}},
    {"device": "", "qdev": "/machine/peripheral-anon/device[3]/virtio-backend", "inserted": {"file": "/x"}},
]


def observe(**changes: Any) -> Any:
    replies: dict[str, Any] = {
        "status": {"status": "running", "running": True},
        "cpus": [cpu(0), cpu(1)],
        "memory": {"base-memory": 256 * MiB, "plugged-memory": 256 * MiB},
        "block": BLOCK,
        "peripherals": peripheral_types(PERIPHERALS),
        "macs": {"default": "52:54:00:00:00:01", "b": "52:54:00:00:00:02"},
        "links": {"b": False},
    }
    return observed_machine("vm1", **(replies | changes))


def test_peripheral_types() -> None:
    assert peripheral_types(PERIPHERALS)["disk-cd"] == "ide-cd"
    assert "type" not in peripheral_types(PERIPHERALS)


def test_observed_machine_is_what_qemu_reported() -> None:
    got = observe(pending_unplugs={"nic-b"})
    assert got.state == MachineState.RUNNING
    assert (got.sockets, got.cores, got.threads, got.vcpus) == (2, 1, 1, 2)
    assert got.memory_bytes == 512 * MiB
    assert got.disks == (
        ObservedDisk("cd", "/img/cd.iso", cdrom=True),
        ObservedDisk("root", "/img/root.qcow2"),
    )
    assert got.nics == (
        ObservedNic("b", "52:54:00:00:00:02", False),
        ObservedNic("default", "52:54:00:00:00:01", True),
    )
    assert got.pending_unplugs == ("nic-b",)


@pytest.mark.parametrize(
    ("cpus", "topology"),
    [
        pytest.param([cpu(0)], (1, 1, 1, 1), id="one"),
        pytest.param(
            [cpu(s, c, t) for s in (0, 1) for c in (0, 1) for t in (0, 1)], (2, 2, 2, 8), id="2x2x2"
        ),
        pytest.param([], (0, 1, 1, 0), id="none"),
    ],
)
def test_topology_from_query_cpus_fast(
    cpus: list[dict[str, Any]], topology: tuple[int, int, int, int]
) -> None:
    got = observe(cpus=cpus)
    assert (got.sockets, got.cores, got.threads, got.vcpus) == topology


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        pytest.param("running", MachineState.RUNNING, "", id="running"),
        pytest.param("prelaunch", MachineState.STARTING, "", id="prelaunch"),
        pytest.param("internal-error", MachineState.CRASHED, "internal error", id="kvm-emulation-failure"),
        pytest.param("guest-panicked", MachineState.CRASHED, "panicked", id="panic"),
        pytest.param("shutdown", MachineState.STOPPED, "shut down", id="shutdown"),
        pytest.param("colo", MachineState.RUNNING, "colo", id="unknown-status"),
    ],
)
def test_status_table(status: str, state: MachineState, reason: str) -> None:
    got = observe(status={"status": status})
    assert got.state == state
    assert reason in got.reason
    assert status == "colo" or status in STATUS_TABLE


def exited(code: int) -> int:
    return code << 8


def killed(sig: signal.Signals) -> int:
    return int(sig)


@pytest.mark.parametrize(
    ("kwargs", "state", "reason"),
    [
        pytest.param(
            {"wait_status": killed(signal.SIGKILL), "stop_requested": True},
            MachineState.STOPPED,
            "stopped",
            id="ours",
        ),
        pytest.param(
            {"wait_status": exited(0), "shutdown_event": {"guest": True, "reason": "guest-shutdown"}},
            MachineState.STOPPED,
            "guest shut down (guest-shutdown)",
            id="guest-poweroff",
        ),
        pytest.param(
            {"wait_status": killed(signal.SIGKILL)},
            MachineState.CRASHED,
            "QEMU was killed by SIGKILL",
            id="kill-9",
        ),
        pytest.param(
            {"wait_status": killed(signal.SIGABRT), "stderr_tail": "free(): corrupted\n"},
            MachineState.CRASHED,
            "QEMU was killed by SIGABRT: free(): corrupted",
            id="abort",
        ),
        pytest.param(
            {"wait_status": exited(0), "shutdown_event": {"guest": False, "reason": "host-signal"}},
            MachineState.CRASHED,
            "QEMU exited with status 0 (host-signal)",
            id="sigterm-from-someone-else",
        ),
        pytest.param(
            {"wait_status": exited(1)}, MachineState.CRASHED, "QEMU exited with status 1", id="error-exit"
        ),
        pytest.param({"wait_status": None}, MachineState.CRASHED, "QEMU exited", id="adopted-unknown-status"),
        pytest.param(
            {"wait_status": None, "shutdown_event": {"guest": True, "reason": "guest-shutdown"}},
            MachineState.STOPPED,
            "guest shut down (guest-shutdown)",
            id="adopted-guest-poweroff",
        ),
    ],
)
def test_exit_outcome(kwargs: dict[str, Any], state: MachineState, reason: str) -> None:
    args: dict[str, Any] = {"stop_requested": False, "shutdown_event": None} | kwargs
    assert exit_outcome(**args) == (state, reason)


def test_wait_status_helpers_match_the_os() -> None:
    assert os.WEXITSTATUS(exited(3)) == 3
    assert os.WTERMSIG(killed(signal.SIGKILL)) == signal.SIGKILL


@pytest.mark.parametrize(
    ("device", "cleanup"),
    [
        pytest.param("disk-a", ("blockdev-del", {"node-name": "drive-a"}), id="disk"),
        pytest.param("nic-a", ("netdev_del", {"id": "net-a"}), id="nic"),
        pytest.param("dimm3", ("object-del", {"id": "mem-dimm3"}), id="dimm"),
        pytest.param("cpu-s1-c0-t0", None, id="cpu"),
        pytest.param("dimmer", None, id="not-a-dimm"),
    ],
)
def test_backend_cleanup_after_device_deleted(device: str, cleanup: Any) -> None:
    assert naming.backend_cleanup(device) == cleanup


@pytest.mark.parametrize("name", ["vm1", "ns/vm1", "a%2Fb", "100%"])
def test_run_dir_names_round_trip(name: str) -> None:
    assert "/" not in naming.run_dir_name(name)
    assert naming.machine_name_of(naming.run_dir_name(name)) == name


def test_only_a_stop_requested_over_qmp_reads_as_paused() -> None:
    assert observe(status={"status": "paused", "running": False}).paused
    assert not observe(status={"status": "io-error", "running": False}).paused
    assert not observe().paused
