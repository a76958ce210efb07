"""Where a VMI's serial console log is on this host, and its serial and VNC sockets.

``QemuHypervisor`` sends each guest's serial port to ``<machines>/<machine>/qemu/console.log`` (the machine
directory is named by ``agent.qemu.naming.run_dir_name`` of ``machine.machine_name(ns, name)``). The
file lives as long as the machine's run directory: a restarted VMI starts a new log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmplane.agent.machine import machine_name
from vmplane.agent.qemu import naming

__all__ = ["QemuConsoleLogs", "QemuGuestStreams"]


@dataclass(frozen=True, slots=True)
class QemuConsoleLogs:
    """Console logs of the QEMU machines kept under ``machines_dir`` (QemuHypervisor's ``base_dir``)."""

    machines_dir: Path

    def path(self, namespace: str, name: str) -> Path | None:
        """The log of VMI ``namespace/name``, or None when its machine has none (yet)."""
        run_dir = self.machines_dir / naming.run_dir_name(machine_name(namespace, name))
        log = naming.run_files(run_dir)["console"]
        return log if log.is_file() else None


@dataclass(frozen=True, slots=True)
class QemuGuestStreams:
    """Connections to the serial port and VNC server of the QEMU machines under ``machines_dir``.

    QEMU listens on ``qemu/serial.sock`` and ``qemu/vnc.sock`` in the machine's run directory (never
    on a TCP port); the API server validates the names before they reach a path here.
    """

    machines_dir: Path

    async def open(
        self, namespace: str, name: str, channel: Literal["serial", "vnc"]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the machine's ``channel`` socket (OSError when it has none)."""
        run_dir = self.machines_dir / naming.run_dir_name(machine_name(namespace, name))
        return await asyncio.open_unix_connection(naming.run_files(run_dir)[channel])
