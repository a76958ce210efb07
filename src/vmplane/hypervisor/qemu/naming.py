"""How vmplane names things inside QEMU, in one place.

The argv builder, the hotplug driver and the observer all derive QEMU ids from the names in a
``MachineSpec`` with these functions, and the observer maps ids back to names with the inverse ones,
so a machine adopted after a restart of the agent is read back from QEMU alone. Names are DNS labels
(KubeVirt's rule), which are valid QEMU ids once prefixed with a letter; block node names are limited
to 31 characters by QEMU, so longer ones are replaced by a digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = [
    "CONSOLE_LOG",
    "DIMM_PREFIX",
    "GUEST_AGENT_CHANNEL",
    "GUEST_AGENT_SOCKET",
    "MACHINE_RECORD",
    "PIDFILE",
    "QEMU_DIR",
    "QMP_SOCKET",
    "ROOT_PORT_PREFIX",
    "STDERR_LOG",
    "backend_cleanup",
    "cpu_id",
    "dimm_id",
    "dimm_index",
    "disk_device_id",
    "disk_name_of",
    "drive_node",
    "machine_name_of",
    "memdev_id",
    "migration_job",
    "migration_node",
    "netdev_id",
    "nic_device_id",
    "nic_name_of",
    "root_port_id",
    "run_dir_name",
    "run_files",
]

QEMU_DIR = "qemu"
QMP_SOCKET = "qmp.sock"
CONSOLE_LOG = "console.log"
#: The serial port's socket (what the guest writes also goes to the log) and the VNC server's.
SERIAL_SOCKET = "serial.sock"
VNC_SOCKET = "vnc.sock"
#: The guest agent's virtio-serial channel (``org.qemu.guest_agent.0`` in the guest) on the host side.
GUEST_AGENT_SOCKET = "guest-agent.sock"
#: The channel's name in the guest, which qemu-guest-agent opens (``/dev/virtio-ports/<name>``).
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
PIDFILE = "qemu.pid"
MACHINE_RECORD = "machine.json"
STDERR_LOG = "qemu.stderr"

ROOT_PORT_PREFIX = "rp"
DIMM_PREFIX = "dimm"
_DISK = "disk-"
_NIC = "nic-"
_NODE_NAME_MAX = 31


def run_dir_name(name: str) -> str:
    """A directory name for a machine; names with a ``/`` (namespace/name keys) stay unambiguous."""
    return name.replace("%", "%25").replace("/", "%2F")


def machine_name_of(dir_name: str) -> str:
    """Inverse of ``run_dir_name``."""
    return dir_name.replace("%2F", "/").replace("%25", "%")


def root_port_id(index: int) -> str:
    return f"{ROOT_PORT_PREFIX}{index}"


def disk_device_id(disk: str) -> str:
    return f"{_DISK}{disk}"


def disk_name_of(device_id: str) -> str | None:
    return device_id.removeprefix(_DISK) if device_id.startswith(_DISK) else None


def drive_node(disk: str) -> str:
    """The block node name of a disk's format layer (at most 31 characters, as QEMU requires)."""
    return _node_name("drive-", disk)


def _node_name(prefix: str, disk: str) -> str:
    node = f"{prefix}{disk}"
    if len(node) <= _NODE_NAME_MAX:
        return node
    return prefix + hashlib.sha256(disk.encode()).hexdigest()[: _NODE_NAME_MAX - len(prefix)]


def migration_node(disk: str) -> str:
    """The source's NBD client node that a disk is mirrored into during a migration."""
    return _node_name("mig-", disk)


def migration_job(disk: str) -> str:
    """The block job id of a disk's mirror during a migration."""
    return _node_name("mirror-", disk)


def nic_device_id(nic: str) -> str:
    return f"{_NIC}{nic}"


def nic_name_of(device_id: str) -> str | None:
    return device_id.removeprefix(_NIC) if device_id.startswith(_NIC) else None


def netdev_id(nic: str) -> str:
    return f"net-{nic}"


def dimm_id(index: int) -> str:
    return f"{DIMM_PREFIX}{index}"


def dimm_index(device_id: str) -> int | None:
    rest = device_id.removeprefix(DIMM_PREFIX)
    return int(rest) if device_id.startswith(DIMM_PREFIX) and rest.isdigit() else None


def memdev_id(dimm: str) -> str:
    return f"mem-{dimm}"


def cpu_id(props: dict[str, int]) -> str:
    """``cpu-s1-c0-t0`` (with ``-d<die>`` when the topology has dies)."""
    die = f"-d{props['die-id']}" if "die-id" in props else ""
    return f"cpu-s{props.get('socket-id', 0)}{die}-c{props.get('core-id', 0)}-t{props.get('thread-id', 0)}"


def backend_cleanup(device_id: str) -> tuple[str, dict[str, str]] | None:
    """The QMP command that frees a device's backend once QEMU reported the device deleted."""
    if (disk := disk_name_of(device_id)) is not None:
        return "blockdev-del", {"node-name": drive_node(disk)}
    if (nic := nic_name_of(device_id)) is not None:
        return "netdev_del", {"id": netdev_id(nic)}
    if dimm_index(device_id) is not None:
        return "object-del", {"id": memdev_id(device_id)}
    return None


def run_files(run_dir: Path) -> dict[str, Path]:
    """Every file QEMU and the driver keep for a machine.

    ``qemu`` is QEMU's own directory (owned by its user, see ``hypervisor.guestfs``) with what QEMU writes:
    the QMP socket, console log and pidfile. The record and stderr stay in the agent's ``run_dir``,
    out of QEMU's reach.
    """
    qemu = run_dir / QEMU_DIR
    return {
        "qemu": qemu,
        "qmp": qemu / QMP_SOCKET,
        "console": qemu / CONSOLE_LOG,
        "serial": qemu / SERIAL_SOCKET,
        "vnc": qemu / VNC_SOCKET,
        "guest-agent": qemu / GUEST_AGENT_SOCKET,
        "pidfile": qemu / PIDFILE,
        "record": run_dir / MACHINE_RECORD,
        "stderr": run_dir / STDERR_LOG,
    }
