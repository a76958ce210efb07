"""CD-ROM media over QMP: insert, change and eject in a drive that stays plugged.

The decomposed tray commands (``blockdev-open-tray``, ``blockdev-remove-medium``,
``blockdev-insert-medium``, ``blockdev-close-tray``) rather than ``blockdev-change-medium``: the
medium is a node vmplane names (``drive-<disk>``, as at boot), so observation and the orphaned-backend
cleanup recognise it, and the format and read-only options are the boot's. The tray is forced open: a
guest that locked it (a mounted disc) would otherwise only be asked to eject, and the change would
wait on the guest. The caller holds the machine's lock.
"""

from __future__ import annotations

import contextlib

from qemu.qmp import ExecuteError

from vmplane.hypervisor.base import DiskSpec, HotplugError, HypervisorError
from vmplane.hypervisor.qemu import naming
from vmplane.hypervisor.qemu.argv import blockdev_node
from vmplane.hypervisor.qemu.machine import QemuMachine
from vmplane.hypervisor.qemu.observe import drive_of, medium_path

__all__ = ["change_medium"]


async def _current(machine: QemuMachine, device_id: str) -> str | None:
    """The image in drive ``device_id`` ("" when it holds none); None when there is no such drive."""
    for entry in await machine.execute("query-block"):
        if drive_of(entry) == device_id:
            return medium_path(entry)
    return None


async def change_medium(machine: QemuMachine, disk: DiskSpec) -> None:
    """Give drive ``disk.name`` the medium ``disk.path`` (none when ``disk.empty``); idempotent."""
    device_id, node = naming.disk_device_id(disk.name), naming.drive_node(disk.name)
    current = await _current(machine, device_id)
    if current is None:
        raise HotplugError(f"{machine.name}: no CD-ROM drive {disk.name} to change the medium of")
    if current == disk.path:
        return
    await machine.hotplug("blockdev-open-tray", {"id": device_id, "force": True})
    if current:
        await machine.hotplug("blockdev-remove-medium", {"id": device_id})
        with contextlib.suppress(ExecuteError):  # the node is free once out of the drive
            await machine.execute("blockdev-del", {"node-name": node})
    if not disk.empty:
        await machine.hotplug("blockdev-add", blockdev_node(disk))
        try:
            await machine.hotplug("blockdev-insert-medium", {"id": device_id, "node-name": node})
        except HotplugError:
            with contextlib.suppress(HypervisorError, ExecuteError):
                await machine.execute("blockdev-del", {"node-name": node})
            raise
    await machine.hotplug("blockdev-close-tray", {"id": device_id})
