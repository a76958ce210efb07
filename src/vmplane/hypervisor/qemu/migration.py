"""Live migration on QEMU: the QMP sequences of both sides (the decisions are the agents').

Target (``prepare_incoming``): QEMU starts with ``-incoming defer`` from the source's boot and
placement (``migration_layout``), the source's hot-plugged vCPUs, DIMMs, disks and NICs are plugged
in the same slots and order (QEMU migrates device state, never the device tree), the disks to be
copied are exported writable over NBD (``block-export-add``; QEMU activates an incoming image when it
is exported), and ``migrate-incoming tcp:HOST:0`` listens on a port QEMU picks and
``query-migrate`` reports. The target keeps its vCPUs stopped (``-S``) when the stream ends: only
once its exports are gone and its link states are set does it ``cont``.

Source (``migrate``): ``return-path`` on both sides makes the source's ``completed`` mean the
target loaded the state, so a target that dies at the last moment fails the migration instead of
losing the guest. Each copied disk gets an NBD client node on the target's export and a
``blockdev-mirror`` (``sync: top``: the target's overlay has the same base; ``copy-mode:
write-blocking``: once ready, every guest write reaches both sides before it completes, so the
disks are identical when QEMU stops the guest for the switch-over). Memory moves once every mirror
is ready; ``query-migrate`` is followed until the end, with the cluster's completion and progress
timeouts enforced by ``migrate_cancel``. On failure or cancel the mirrors are dropped and the guest
runs on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from qemu.qmp import ExecuteError

from vmplane.hypervisor.base import HypervisorError, MachineSpec
from vmplane.hypervisor.migration import (
    MigrationEndpoint,
    MigrationProgress,
    MigrationSettings,
    MigrationStatus,
)
from vmplane.hypervisor.qemu import naming, plans
from vmplane.hypervisor.qemu.argv import Slot, blockdev_node, disk_at, nic_device
from vmplane.hypervisor.qemu.machine import QemuMachine
from vmplane.hypervisor.qemu.migration_layout import QemuLayout, cpu_position, layout_from
from vmplane.hypervisor.qemu.observe import peripheral_types

__all__ = [
    "CAPABILITIES",
    "UNLIMITED_BANDWIDTH",
    "IncomingTarget",
    "OutgoingMigration",
    "plug_layout",
    "progress_of",
    "read_layout",
    "status_of",
    "tcp_uri",
]

log = logging.getLogger(__name__)

#: How often the source reads ``query-migrate`` and ``query-block-jobs`` (at once on a MIGRATION
#: event: the ``events`` capability is on).
POLL_INTERVAL = 0.05
#: ``max-bandwidth`` for "unlimited" (QEMU's own default is 32 MiB/s).
UNLIMITED_BANDWIDTH = 1 << 50
#: The migration capabilities both sides set (``return-path``: see the module docstring).
CAPABILITIES = [{"capability": "events", "state": True}, {"capability": "return-path", "state": True}]
_JOB_END_TIMEOUT = 10.0
_ENDED = {
    "completed": MigrationStatus.COMPLETED,
    "failed": MigrationStatus.FAILED,
    "cancelled": MigrationStatus.CANCELLED,
}


def status_of(qemu_status: str) -> MigrationStatus:
    """``query-migrate``'s ``status``, folded (setup, active, device, cancelling... are all active)."""
    if qemu_status == "none":
        return MigrationStatus.NONE
    return _ENDED.get(qemu_status, MigrationStatus.ACTIVE)


def progress_of(reply: Any, jobs: Any, *, error: str = "") -> MigrationProgress:
    """A ``MigrationProgress`` from ``query-migrate`` and the mirror jobs of ``query-block-jobs``."""
    ram = reply.get("ram") or {}
    page = int(ram.get("page-size") or 4096)
    status = status_of(str(reply.get("status", "none")))
    return MigrationProgress(
        status=status,
        transferred_bytes=int(ram.get("transferred", 0)),
        remaining_bytes=int(ram.get("remaining", 0)),
        total_bytes=int(ram.get("total", 0)),
        dirty_bytes_per_second=int(ram.get("dirty-pages-rate", 0)) * page,
        disk_transferred_bytes=sum(int(j.get("offset", 0)) for j in jobs),
        disk_total_bytes=sum(int(j.get("len", 0)) for j in jobs),
        downtime_ms=int(reply["downtime"]) if "downtime" in reply else None,
        total_time_ms=int(reply["total-time"]) if "total-time" in reply else None,
        error=error or str(reply.get("error-desc", "")),
    )


def tcp_uri(host: str, port: int) -> str:
    """``tcp:HOST:PORT`` for QEMU, refusing anything but an IP address and a port number."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError as err:
        raise HypervisorError(f"migration address {host[:64]!r} is not an IP address") from err
    if not 0 <= port <= 65535:
        raise HypervisorError(f"migration port {port} is not a TCP port")
    return f"tcp:[{address}]:{port}" if address.version == 6 else f"tcp:{address}:{port}"


async def read_layout(machine: QemuMachine) -> str:
    """The running machine's device layout (see ``migration_layout``)."""
    peripherals = peripheral_types(await machine.execute("qom-list", {"path": "/machine/peripheral"}))
    placed = [
        dev
        for dev in peripherals
        if naming.disk_name_of(dev) is not None
        or naming.nic_name_of(dev) is not None
        or dev in ("scsi0", "virtio-serial0")
    ]
    buses = await asyncio.gather(
        *(
            machine.execute("qom-get", {"path": f"/machine/peripheral/{d}", "property": "parent_bus"})
            for d in placed
        )
    )
    scsi: dict[str, tuple[int, int]] = {}
    for device in placed:
        if peripherals[device] in ("scsi-hd", "scsi-cd"):
            path = f"/machine/peripheral/{device}"
            lun = await machine.execute("qom-get", {"path": path, "property": "lun"})
            target = await machine.execute("qom-get", {"path": path, "property": "scsi-id"})
            scsi[device] = (int(lun), int(target))
    return layout_from(
        machine.record.spec,
        hotpluggable_cpus=await machine.execute("query-hotpluggable-cpus"),
        memory_devices=await machine.execute("query-memory-devices"),
        peripherals=peripherals,
        parent_buses={d: str(b) for d, b in zip(placed, buses, strict=True)},
        scsi_addresses=scsi,
        links=machine.record.links,
    )


async def plug_layout(machine: QemuMachine, layout: QemuLayout, spec: MachineSpec) -> None:
    """Plug what the source hot-plugged, in the same slots and order, before the state arrives."""
    slots = plans.cpu_slots(await machine.execute("query-hotpluggable-cpus"))
    for props in layout.cpus:
        slot = next((s for s in slots if cpu_position(s.props) == props and not s.present), None)
        if slot is None:
            raise HypervisorError(f"{spec.name}: no free vCPU slot {props} on the target")
        device = {"driver": slot.driver, "id": naming.cpu_id(dict(slot.props)), **slot.props}
        await machine.hotplug("device_add", device)
    for dimm in layout.dimms:
        dimm_id = naming.dimm_id(dimm.index)
        memdev = naming.memdev_id(dimm_id)
        await machine.hotplug(
            "object-add", {"qom-type": "memory-backend-ram", "id": memdev, "size": dimm.size}
        )
        await machine.hotplug("device_add", {"driver": "pc-dimm", "id": dimm_id, "memdev": memdev})
    disks = {d.name: d for d in spec.disks}
    for name in layout.disks:
        placed = layout.slots[naming.disk_device_id(name)]
        await machine.hotplug("blockdev-add", blockdev_node(disks[name]))
        place = Slot(placed.bus, lun=placed.lun, scsi_id=placed.scsi_id)
        await machine.hotplug("device_add", disk_at(disks[name], place))
    nics = {n.name: n for n in spec.nics}
    for name in layout.nics:
        await machine.hotplug("netdev_add", {"type": "user", "id": naming.netdev_id(name)})
        await machine.hotplug(
            "device_add", nic_device(nics[name], layout.slots[naming.nic_device_id(name)].bus)
        )


def _free_port(host: str) -> int:
    # nbd-server-start cannot pick a port and say which; QEMU binds this one a moment later.
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class IncomingTarget:
    """A target machine waiting for its guest; ``cont`` once the stream completed."""

    endpoint: MigrationEndpoint
    exports: tuple[str, ...]
    links: dict[str, bool]
    arrived: bool = False

    @classmethod
    async def listen(
        cls, machine: QemuMachine, *, host: str, copied: tuple[str, ...], links: dict[str, bool]
    ) -> IncomingTarget:
        """Export ``copied`` over NBD and start listening for the stream on ``host``."""
        await machine.execute("migrate-set-capabilities", {"capabilities": CAPABILITIES})
        disk_port = None
        exports: list[str] = []
        if copied:
            disk_port = _free_port(host)
            address = {"type": "inet", "data": {"host": host, "port": str(disk_port)}}
            await machine.execute("nbd-server-start", {"addr": address})
            for disk in copied:
                export = {
                    "type": "nbd",
                    "id": naming.migration_node(disk),
                    "node-name": naming.drive_node(disk),
                    "name": disk,
                    "writable": True,
                }
                await machine.execute("block-export-add", export)
                exports.append(naming.migration_node(disk))
        await machine.execute("migrate-incoming", {"uri": tcp_uri(host, 0)})
        listening = (await machine.execute("query-migrate")).get("socket-address") or []
        if not listening:
            raise HypervisorError(f"{machine.name}: QEMU did not say where it listens for the migration")
        endpoint = MigrationEndpoint(host=host, port=int(listening[0]["port"]), disk_port=disk_port)
        return cls(endpoint=endpoint, exports=tuple(exports), links=links)

    async def finish(self, machine: QemuMachine) -> None:
        """The guest's state is here: drop the exports, restore link states and let it run."""
        for export in self.exports:
            with contextlib.suppress(ExecuteError):
                await machine.execute("block-export-del", {"id": export, "mode": "hard"})
        if self.exports:
            with contextlib.suppress(ExecuteError):
                await machine.execute("nbd-server-stop")
        for nic, up in self.links.items():
            if not up:
                await machine.execute("set_link", {"name": naming.nic_device_id(nic), "up": False})
        await machine.execute("cont")
        self.arrived = True


@dataclass
class OutgoingMigration:
    """A source's migration: its task, the latest progress, and what it came to."""

    target: MigrationEndpoint
    copied: tuple[str, ...]
    settings: MigrationSettings
    progress: MigrationProgress = field(default_factory=lambda: MigrationProgress(MigrationStatus.ACTIVE))
    cancel_requested: bool = False
    _streaming: bool = False
    _error: str = ""
    _started: float = field(default_factory=time.monotonic)
    # Set by each MIGRATION event, so the end is seen when QEMU reports it, not at the next poll.
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, machine: QemuMachine) -> None:
        """Copy the disks, move the memory, follow it to its end; never raises."""
        machine.on_migration = lambda _status: self._changed.set()
        try:
            await self._run(machine)
        except (HypervisorError, ExecuteError) as err:
            self._error = self._error or str(err)
            with contextlib.suppress(HypervisorError, ExecuteError):
                await machine.execute("migrate_cancel")
            self.progress = MigrationProgress(MigrationStatus.FAILED, error=self._error)
        finally:
            machine.on_migration = None
            with contextlib.suppress(HypervisorError, ExecuteError):
                await self._drop_mirrors(machine)
        log.info("%s: migration to %s: %s", machine.name, self.target.host, self.progress.status.value)

    async def _run(self, machine: QemuMachine) -> None:
        bandwidth = self.settings.bandwidth_bytes_per_second or UNLIMITED_BANDWIDTH
        parameters = {"max-bandwidth": bandwidth, "downtime-limit": self.settings.max_downtime_ms}
        await machine.execute("migrate-set-capabilities", {"capabilities": CAPABILITIES})
        await machine.execute("migrate-set-parameters", parameters)
        if self.copied:
            await self._start_mirrors(machine)
            if not await self._mirrors_ready(machine):
                return
        await machine.execute("migrate", {"uri": tcp_uri(self.target.host, self.target.port)})
        self._streaming = True
        await self._follow(machine)

    async def _start_mirrors(self, machine: QemuMachine) -> None:
        if self.target.disk_port is None:
            raise HypervisorError("the target exports no disks, but disks are to be copied")
        tcp_uri(self.target.host, self.target.disk_port)  # refuses a host that is not an address
        for disk in self.copied:
            server = {"type": "inet", "host": self.target.host, "port": str(self.target.disk_port)}
            node = naming.migration_node(disk)
            await machine.execute(
                "blockdev-add", {"driver": "nbd", "node-name": node, "server": server, "export": disk}
            )
            mirror = {
                "job-id": naming.migration_job(disk),
                "device": naming.drive_node(disk),
                "target": node,
                "sync": "top",
                "copy-mode": "write-blocking",
            }
            await machine.execute("blockdev-mirror", mirror)

    async def _jobs(self, machine: QemuMachine) -> list[dict[str, Any]]:
        ours = {naming.migration_job(d) for d in self.copied}
        return [j for j in await machine.execute("query-block-jobs") if j.get("device") in ours]

    async def _mirrors_ready(self, machine: QemuMachine) -> bool:
        """Wait until every mirror is in sync (False when cancelled or timed out first)."""
        while True:
            jobs = await self._jobs(machine)
            self.progress = progress_of({"status": "active"}, jobs)
            if len(jobs) < len(self.copied):
                raise HypervisorError("a disk copy to the target ended before it was in sync")
            if all(j.get("ready") for j in jobs):
                return True
            if self.cancel_requested:
                self.progress = MigrationProgress(
                    MigrationStatus.CANCELLED, error="the migration was cancelled"
                )
                return False
            if time.monotonic() - self._started > self.settings.completion_timeout:
                raise HypervisorError(self._timed_out())
            await asyncio.sleep(POLL_INTERVAL)

    def _timed_out(self) -> str:
        self._error = f"the migration did not complete within {self.settings.completion_timeout:g}s"
        return self._error

    async def _follow(self, machine: QemuMachine) -> None:
        best_remaining: int | None = None
        last_progress = time.monotonic()
        cancel_sent = False
        while True:
            reply = await machine.execute("query-migrate")
            jobs = await self._jobs(machine) if self.copied else []
            self.progress = progress_of(reply, jobs, error=self._error)
            if self.progress.finished:
                return
            now = time.monotonic()
            remaining = self.progress.remaining_bytes
            if best_remaining is None or remaining < best_remaining:
                best_remaining, last_progress = remaining, now
            if not self._error:
                if now - self._started > self.settings.completion_timeout:
                    self._timed_out()
                elif now - last_progress > self.settings.progress_timeout:
                    self._error = f"the migration made no progress for {self.settings.progress_timeout:g}s"
            if (self._error or self.cancel_requested) and not cancel_sent:
                await machine.execute("migrate_cancel")
                cancel_sent = True
            await self._next_poll()

    async def _next_poll(self) -> None:
        """Wait ``POLL_INTERVAL``, or less when QEMU sends a MIGRATION event meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_INTERVAL):
                await self._changed.wait()
        self._changed.clear()

    async def _drop_mirrors(self, machine: QemuMachine) -> None:
        """End the mirror jobs and their NBD nodes (after the migration, whatever its outcome)."""
        if not self.copied:
            return
        for job in await self._jobs(machine):
            with contextlib.suppress(ExecuteError):
                await machine.execute("block-job-cancel", {"device": job["device"], "force": True})
        deadline = time.monotonic() + _JOB_END_TIMEOUT
        while await self._jobs(machine) and time.monotonic() < deadline:  # noqa: ASYNC110 (QMP is polled)
            await asyncio.sleep(POLL_INTERVAL)
        for disk in self.copied:
            with contextlib.suppress(ExecuteError):
                await machine.execute("blockdev-del", {"node-name": naming.migration_node(disk)})

    def cancel(self) -> None:
        self.cancel_requested = True

    async def current(self, machine: QemuMachine) -> MigrationProgress:
        """The progress as QEMU has it now (the last poll's, once the stream has ended or before
        it began: ``query-migrate`` says nothing of the disk copy before it)."""
        if not self._streaming or self.progress.finished or machine.state is not None:
            return self.progress
        try:
            reply = await machine.execute("query-migrate")
            jobs = await self._jobs(machine) if self.copied else []
        except (HypervisorError, ExecuteError):
            return self.progress
        return progress_of(reply, jobs, error=self._error)
