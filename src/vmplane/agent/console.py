"""Where a VMI's serial console log is on this host, and its serial and VNC sockets.

``QemuHypervisor`` sends each guest's serial port to ``<machines>/<machine>/qemu/console.log`` (the machine
directory is named by ``hypervisor.qemu.naming.run_dir_name`` of ``machine.machine_name(ns, name)``). The
file lives as long as the machine's run directory: a restarted VMI starts a new log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from vmplane.agent.machine import machine_name
from vmplane.hypervisor.base import HypervisorError
from vmplane.hypervisor.qemu import naming

__all__ = ["PortForwarder", "QemuConsoleLogs", "QemuGuestStreams"]

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PortForwarder(Protocol):
    """Forwards loopback ports to guests (``QemuHypervisor``)."""

    async def forward_port(self, name: str, port: int) -> tuple[str, int]:
        """A forward of a fresh 127.0.0.1 port to the guest's ``port``: (handle, host port)."""
        ...

    async def unforward_port(self, name: str, netdev: str, host_port: int) -> None:
        """Remove a forward."""
        ...


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
    """Connections to the serial port, VNC server and guest TCP ports of the QEMU machines under
    ``machines_dir``.

    QEMU listens on ``qemu/serial.sock`` and ``qemu/vnc.sock`` in the machine's run directory (never
    on a TCP port); the API server validates the names before they reach a path here. A guest port is
    reached through a loopback forward ``forwarder`` makes for the one connection and removes after.
    """

    machines_dir: Path
    forwarder: PortForwarder | None = None

    @contextlib.asynccontextmanager
    async def connect(
        self, namespace: str, name: str, channel: Literal["serial", "vnc"] | int
    ) -> AsyncIterator[Stream]:
        """Connect to the machine's ``channel`` socket or guest port (OSError when unreachable)."""
        machine = machine_name(namespace, name)
        forward: tuple[str, int] | None = None
        if isinstance(channel, int):
            if self.forwarder is None:
                raise OSError(f"{machine}: this host forwards no ports")
            try:
                forward = await self.forwarder.forward_port(machine, channel)
            except HypervisorError as err:
                raise OSError(str(err)) from err
        try:
            if forward is not None:
                reader, writer = await asyncio.open_connection("127.0.0.1", forward[1])
            else:
                run_dir = self.machines_dir / naming.run_dir_name(machine)
                reader, writer = await asyncio.open_unix_connection(naming.run_files(run_dir)[str(channel)])
            try:
                yield reader, writer
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        finally:
            if forward is not None and self.forwarder is not None:
                await self.forwarder.unforward_port(machine, *forward)
