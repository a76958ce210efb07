"""What a machine *is*, derived in one place from what QEMU reported.

``observed_machine`` turns the replies of ``query-status``, ``query-cpus-fast``,
``query-memory-size-summary``, ``query-block`` and ``qom-list /machine/peripheral`` into an
``ObservedMachine``; ``exit_outcome`` decides what a finished QEMU process means. Both are pure so
that the status rules read as tables and are tested with recorded replies.

QEMU 7.2 has no query for a NIC's link state (``set_link`` is write-only, and ``info network`` does
not show it), so the link states are the ones the driver set, passed in as ``links``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection, Mapping
from typing import Any

from vmplane.hypervisor.base import MachineState, ObservedDisk, ObservedMachine, ObservedNic
from vmplane.hypervisor.qemu import naming

__all__ = [
    "STATUS_TABLE",
    "drive_of",
    "exit_outcome",
    "medium_path",
    "observed_machine",
    "peripheral_types",
]

QmpReply = Any

#: ``query-status`` ``status`` -> (state, reason). Unknown statuses read as Running with the status as reason.
STATUS_TABLE: Mapping[str, tuple[MachineState, str]] = {
    "running": (MachineState.RUNNING, ""),
    "prelaunch": (MachineState.STARTING, ""),
    "inmigrate": (MachineState.INCOMING, "waiting for the incoming migration"),
    "postmigrate": (MachineState.MIGRATED, "the guest runs on the migration target"),
    "paused": (MachineState.RUNNING, "paused"),
    "suspended": (MachineState.RUNNING, "guest suspended"),
    "io-error": (MachineState.RUNNING, "paused on an I/O error"),
    "watchdog": (MachineState.RUNNING, "paused by the watchdog"),
    "guest-panicked": (MachineState.CRASHED, "guest kernel panicked"),
    "internal-error": (MachineState.CRASHED, "QEMU internal error (for example a KVM emulation failure)"),
    "shutdown": (MachineState.STOPPED, "guest shut down"),
}

_CDROM_DRIVERS = frozenset({"ide-cd", "scsi-cd"})
_PERIPHERAL = "/machine/peripheral/"


def peripheral_types(reply: QmpReply) -> dict[str, str]:
    """``qom-list /machine/peripheral`` -> ``{device id: driver}``."""
    return {
        p["name"]: p["type"].removeprefix("child<").removesuffix(">")
        for p in reply
        if p["type"].startswith("child<")
    }


def _device_of(qdev: str) -> str:
    """``/machine/peripheral/disk-a/virtio-backend`` or ``disk-a`` -> ``disk-a``."""
    return qdev.removeprefix(_PERIPHERAL).split("/", 1)[0]


def drive_of(entry: QmpReply) -> str:
    """The device id a ``query-block`` entry belongs to."""
    return _device_of(entry.get("qdev", ""))


def medium_path(entry: QmpReply) -> str:
    """The image file of a ``query-block`` entry; "" for a drive with no medium (an empty CD-ROM)."""
    inserted = entry.get("inserted") or {}
    return str((inserted.get("image") or {}).get("filename") or inserted.get("file", ""))


def _disks(block: QmpReply, peripherals: Mapping[str, str]) -> tuple[ObservedDisk, ...]:
    disks = []
    for entry in block:
        device = drive_of(entry)
        name = naming.disk_name_of(device)
        if name is None:
            continue
        path = medium_path(entry)
        disks.append(ObservedDisk(name=name, path=path, cdrom=peripherals.get(device) in _CDROM_DRIVERS))
    return tuple(sorted(disks, key=lambda d: d.name))


def _nics(
    peripherals: Mapping[str, str], macs: Mapping[str, str], links: Mapping[str, bool]
) -> tuple[ObservedNic, ...]:
    nics = []
    for device in peripherals:
        name = naming.nic_name_of(device)
        if name is not None:
            nics.append(ObservedNic(name=name, mac=macs.get(name, ""), link_up=links.get(name, True)))
    return tuple(sorted(nics, key=lambda n: n.name))


def observed_machine(
    name: str,
    *,
    status: QmpReply,
    cpus: QmpReply,
    memory: QmpReply,
    block: QmpReply,
    peripherals: Mapping[str, str],
    macs: Mapping[str, str],
    links: Mapping[str, bool],
    pending_unplugs: Collection[str] = (),
) -> ObservedMachine:
    """The machine as these QMP replies describe it (``macs`` and ``links`` are keyed by NIC name)."""
    state, reason = STATUS_TABLE.get(status["status"], (MachineState.RUNNING, status["status"]))
    props = [c.get("props", {}) for c in cpus]
    sockets = {p.get("socket-id", 0) for p in props}
    cores = {(p.get("socket-id", 0), p.get("die-id", 0), p.get("core-id", 0)) for p in props}
    return ObservedMachine(
        name=name,
        state=state,
        reason=reason,
        sockets=len(sockets),
        cores=len(cores) // len(sockets) if sockets else 1,
        threads=len(props) // len(cores) if cores else 1,
        vcpus=len(props),
        memory_bytes=int(memory["base-memory"]) + int(memory.get("plugged-memory", 0)),
        disks=_disks(block, peripherals),
        nics=_nics(peripherals, macs, links),
        pending_unplugs=tuple(sorted(pending_unplugs)),
        paused=status["status"] == "paused",
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_outcome(
    *,
    wait_status: int | None,
    stop_requested: bool,
    shutdown_event: Mapping[str, Any] | None,
    stderr_tail: str = "",
) -> tuple[MachineState, str]:
    """What a finished QEMU process means.

    ``wait_status`` is the raw ``waitpid`` status, or None when the process was not our child (it was
    adopted) and its status is unknowable. Only a stop we asked for, or a guest that powered itself
    off, is Stopped; anything else (a signal, an abort, QEMU quitting at someone else's request) is
    a crash.
    """
    if stop_requested:
        return MachineState.STOPPED, "stopped"
    clean = wait_status is None or (os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0)
    shutdown = f" ({shutdown_event.get('reason', 'unknown')})" if shutdown_event is not None else ""
    if shutdown_event is not None and shutdown_event.get("guest") and clean:
        return MachineState.STOPPED, f"guest shut down{shutdown}"
    detail = f": {stderr_tail.strip()}" if stderr_tail.strip() else ""
    if wait_status is None:
        why = "QEMU exited"
    elif os.WIFSIGNALED(wait_status):
        why = f"QEMU was killed by {_signal_name(os.WTERMSIG(wait_status))}"
    else:
        why = f"QEMU exited with status {os.WEXITSTATUS(wait_status)}"
    return MachineState.CRASHED, f"{why}{shutdown}{detail}"
