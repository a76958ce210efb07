"""Where a VMI's serial console log is on this host.

``QemuHypervisor`` sends each guest's serial port to ``<machines>/<machine>/qemu/console.log`` (the machine
directory is named by ``agent.qemu.naming.run_dir_name`` of ``machine.machine_name(ns, name)``). The
file lives as long as the machine's run directory: a restarted VMI starts a new log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmplane.agent.machine import machine_name
from vmplane.agent.qemu import naming

__all__ = ["QemuConsoleLogs"]


@dataclass(frozen=True, slots=True)
class QemuConsoleLogs:
    """Console logs of the QEMU machines kept under ``machines_dir`` (QemuHypervisor's ``base_dir``)."""

    machines_dir: Path

    def path(self, namespace: str, name: str) -> Path | None:
        """The log of VMI ``namespace/name``, or None when its machine has none (yet)."""
        run_dir = self.machines_dir / naming.run_dir_name(machine_name(namespace, name))
        log = naming.run_files(run_dir)["console"]
        return log if log.is_file() else None
