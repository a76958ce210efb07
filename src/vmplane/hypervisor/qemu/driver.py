"""``QemuHypervisor``: the Hypervisor protocol on real QEMU processes, driven over QMP.

Each machine lives in ``<base_dir>/<name>/`` (mode 0711, the agent's): the machine record and QEMU's
stderr, and QEMU's own directory ``qemu/`` (0700, owned by the QEMU user) with the QMP socket (0600),
serial console log and pidfile. QEMU is started as the unprivileged ``GuestUser`` (``hypervisor.guestfs``:
``vmplane-qemu`` when the agent is root) under ``-sandbox``. QEMU runs in its own session, so it
outlives the agent; a new agent calls ``adopt()`` to reconnect to whatever the records describe, never
restarting a guest.

Hotplug follows QEMU's documented sequences (docs/system/cpu-hotplug.rst, docs/memory-hotplug.txt,
qapi/qdev.json): vCPUs fill free ``query-hotpluggable-cpus`` slots; memory grows by pc-dimm devices
backed by ``memory-backend-ram`` and shrinks by unplugging earlier hot-plugged DIMMs; disks and NICs
go on free ``pcie-root-port``s. Unplugs wait for ``DEVICE_DELETED`` (filtered on ``data.device``)
and free the backend afterwards. The decisions are in ``plans`` and the status rules in ``observe``;
this module only sequences QMP calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Literal

from qemu.qmp import ExecuteError

from vmplane.hypervisor.base import (
    DiskSpec,
    HotplugError,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedMachine,
    OnChange,
)
from vmplane.hypervisor.guestfs import (
    PRIVATE_DIR_MODE,
    GuestSetupError,
    GuestUser,
    guest_user,
    hand_over,
    log_identity,
    make_dirs,
    privilege_argv,
    unsearchable,
)
from vmplane.hypervisor.migration import (
    MigrationEndpoint,
    MigrationProgress,
    MigrationSettings,
    MigrationStatus,
)
from vmplane.hypervisor.qemu import media, naming, plans
from vmplane.hypervisor.qemu.accel import probe_accel
from vmplane.hypervisor.qemu.agent_watch import AgentWatch
from vmplane.hypervisor.qemu.argv import (
    DIMM_SLOTS,
    NIC_DRIVERS,
    Placement,
    blockdev_node,
    build_argv,
    disk_device,
    nic_device,
    scsi_hotplug_device,
)
from vmplane.hypervisor.qemu.guest_agent import GuestAgentError
from vmplane.hypervisor.qemu.machine import QemuMachine
from vmplane.hypervisor.qemu.machine_types import MachineTypesError, q35_machine_types
from vmplane.hypervisor.qemu.migration import (
    IncomingTarget,
    OutgoingMigration,
    plug_layout,
    read_layout,
    tcp_uri,
)
from vmplane.hypervisor.qemu.migration_layout import incoming_boot, parse_layout
from vmplane.hypervisor.qemu.observe import observed_machine, peripheral_types
from vmplane.hypervisor.qemu.process import proc_starttime, spawn, stderr_tail
from vmplane.hypervisor.qemu.records import MachineRecord, read_record, write_record
from vmplane.hypervisor.qemu.session import QmpUnavailableError

__all__ = ["QemuHypervisor"]

log = logging.getLogger(__name__)

_QUIT_GRACE = 5.0
_KILL_GRACE = 10.0


class QemuHypervisor:
    """Runs machines as QEMU processes under ``base_dir``.

    ``accel="auto"`` uses ``probe_accel`` (KVM only where it can run Linux guests); tests pin "tcg".
    ``unplug_timeout`` bounds DIMM removal in ``set_memory`` (disk and NIC detaches take their own).
    ``user`` is who QEMU runs as (default: ``guestfs.guest_user`` of the agent's effective uid).
    """

    def __init__(
        self,
        *,
        base_dir: Path,
        accel: Literal["auto", "kvm", "tcg"] = "auto",
        on_change: OnChange,
        qemu_binary: str = "qemu-system-x86_64",
        connect_timeout: float = 10.0,
        unplug_timeout: float = 30.0,
        user: GuestUser | None = None,
    ) -> None:
        self._base_dir = base_dir
        self._user = user
        self._accel_choice = accel
        self._accel: Literal["kvm", "tcg"] | None = None if accel == "auto" else accel
        self._on_change = on_change
        self._qemu_binary = qemu_binary
        self._connect_timeout = connect_timeout
        self._unplug_timeout = unplug_timeout
        self._machines: dict[str, QemuMachine] = {}
        self._agents: dict[str, AgentWatch] = {}
        self._incoming: dict[str, IncomingTarget] = {}
        self._outgoing: dict[str, OutgoingMigration] = {}

    @property
    def accel(self) -> Literal["kvm", "tcg"]:
        if self._accel is None:
            probe = probe_accel()
            log.info("accelerator: %s (%s)", probe.accel, probe.reason)
            self._accel = probe.accel
        return self._accel

    @property
    def user(self) -> GuestUser:
        """Who QEMU runs as; raises HypervisorError when that user does not exist."""
        if self._user is None:
            try:
                self._user = guest_user(euid=os.geteuid())
            except GuestSetupError as err:
                raise HypervisorError(str(err)) from err
        log_identity(self._user)
        return self._user

    def run_dir(self, name: str) -> Path:
        """``<base_dir>/<name>``; refuses a name that would not be one directory right under it."""
        run_dir = self._base_dir / naming.run_dir_name(name)
        if (
            "\x00" in name
            or run_dir.name in ("", ".", "..")
            or run_dir.parent != self._base_dir
            or run_dir.is_symlink()
        ):
            raise HypervisorError(f"machine name {name!r} cannot name a run directory")
        return run_dir

    def _check_machine_type(self, spec: MachineSpec) -> None:
        """Only a machine type this QEMU printed in ``-machine help`` reaches ``-machine``."""
        try:
            allowed = q35_machine_types(self._qemu_binary)
        except MachineTypesError as err:
            raise HypervisorError(f"{spec.name}: {err}") from err
        if spec.machine not in allowed:
            raise HypervisorError(
                f"{spec.name}: spec.domain.machine.type {spec.machine!r} is not supported "
                f"(allowed values: {', '.join(allowed)})"
            )

    def _get(self, name: str) -> QemuMachine:
        machine = self._machines.get(name)
        if machine is None:
            raise MachineNotFoundError(name)
        return machine

    def _running(self, name: str) -> QemuMachine:
        machine = self._get(name)
        if machine.state is not None:
            raise HypervisorError(f"{name} is not running ({machine.state.value}: {machine.reason})")
        return machine

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, spec: MachineSpec) -> None:
        existing = self._machines.get(spec.name)
        if existing is not None:
            if existing.state is None:
                return
            raise HypervisorError(
                f"{spec.name} exists ({existing.state.value}); forget it before starting again"
            )
        await self._launch(spec, setup=QemuMachine.resume)

    async def _launch(
        self,
        spec: MachineSpec,
        *,
        setup: Callable[[QemuMachine], Awaitable[None]],
        placement: Placement | None = None,
        incoming: bool = False,
        links: Mapping[str, bool] | None = None,
    ) -> QemuMachine:
        """Spawn QEMU for ``spec``, connect QMP and run ``setup``; on any failure nothing is left."""
        run_dir = self.run_dir(spec.name)
        self._check_machine_type(spec)
        try:
            argv = build_argv(
                spec,
                run_dir=run_dir,
                accel=self.accel,
                qemu_binary=self._qemu_binary,
                placement=placement,
                incoming=incoming,
            )
        except ValueError as err:
            raise HypervisorError(f"{spec.name}: {err}") from err
        self._refuse_unadopted(run_dir)
        user = self.user
        self._make_run_dir(run_dir, user)
        files = naming.run_files(run_dir)
        command = [*privilege_argv(user), *argv]
        try:
            pid = spawn(command, stderr_path=files["stderr"])
        except OSError as err:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise HypervisorError(f"{spec.name}: cannot run {command[0]}: {err}") from err
        record = MachineRecord(
            name=spec.name,
            pid=pid,
            starttime=proc_starttime(pid) or 0,
            accel=self.accel,
            spec=spec,
            links=dict(links) if links is not None else {nic.name: nic.link_up for nic in spec.nics},
        )
        write_record(files["record"], record)
        machine = QemuMachine(record=record, run_dir=run_dir, on_change=self._on_change)
        self._machines[spec.name] = machine
        try:
            await machine.attach(connect_timeout=self._connect_timeout)
            # QEMU binds the socket under the umask; its 0700 directory already keeps others out.
            for socket_file in (files["qmp"], files["guest-agent"]):
                with contextlib.suppress(OSError):
                    os.chmod(socket_file, 0o600)
            await setup(machine)
        except (HypervisorError, ExecuteError) as err:
            machine.kill()
            await machine.wait_exit(_KILL_GRACE)
            reason = stderr_tail(files["stderr"]) or str(err)
            await machine.close()
            del self._machines[spec.name]
            shutil.rmtree(run_dir, ignore_errors=True)
            raise HypervisorError(f"{spec.name}: QEMU failed to start: {reason}") from err
        self._watch_agent(spec.name, run_dir)
        return machine

    def _watch_agent(self, name: str, run_dir: Path) -> None:
        path = naming.run_files(run_dir)["guest-agent"]
        self._agents[name] = AgentWatch(name, path, on_change=self._on_change).start()

    async def _unwatch_agent(self, name: str) -> None:
        watch = self._agents.pop(name, None)
        if watch is not None:
            await watch.close()

    def _make_run_dir(self, run_dir: Path, user: GuestUser) -> None:
        """A fresh run directory (the agent's) holding QEMU's own one (``user``'s, 0700)."""
        make_dirs(self._base_dir)
        blocked = unsearchable(self._base_dir, user)
        if blocked is not None:
            raise HypervisorError(
                f"QEMU runs as {user.name}, which cannot enter {blocked} on the way to {self._base_dir}"
            )
        shutil.rmtree(run_dir, ignore_errors=True)
        make_dirs(run_dir)
        qemu_dir = naming.run_files(run_dir)["qemu"]
        qemu_dir.mkdir(mode=PRIVATE_DIR_MODE)
        hand_over(qemu_dir, user, mode=PRIVATE_DIR_MODE)

    def _refuse_unadopted(self, run_dir: Path) -> None:
        try:
            record = read_record(run_dir / naming.MACHINE_RECORD)
        except (OSError, ValueError):
            return
        if record.exit_state is None and proc_starttime(record.pid) == record.starttime:
            raise HypervisorError(f"{record.name} is already running as pid {record.pid}; adopt() it")

    async def stop(self, name: str, *, grace_period: float) -> None:
        machine = self._get(name)
        if machine.state is not None:
            return
        machine.stop_requested = True
        with contextlib.suppress(HypervisorError, ExecuteError):
            await machine.execute("system_powerdown")
        if await machine.wait_exit(grace_period):
            return
        with contextlib.suppress(HypervisorError, ExecuteError):
            await machine.execute("quit")
        if await machine.wait_exit(_QUIT_GRACE):
            return
        machine.kill()
        if not await machine.wait_exit(_KILL_GRACE):
            raise HypervisorError(f"{name}: QEMU pid {machine.record.pid} survived SIGKILL")

    async def adopt(self) -> list[str]:
        """Reconnect to every machine recorded under ``base_dir``; returns all their names.

        Machines whose QEMU ended while no agent watched are returned too and observe as Crashed
        (or with the outcome recorded at exit), so the agent can decide and ``forget`` them. A machine
        whose QMP socket another client holds is skipped with a warning.
        """
        names: list[str] = []
        if not self._base_dir.is_dir():
            return names
        for run_dir in sorted(p for p in self._base_dir.iterdir() if p.is_dir()):
            try:
                record = read_record(run_dir / naming.MACHINE_RECORD)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as err:
                log.warning("%s: unreadable machine record: %s", run_dir, err)
                continue
            if record.name not in self._machines:
                machine = await self._adopt_one(record, run_dir)
                if machine is None:
                    continue
                self._machines[record.name] = machine
                if machine.state is None:
                    self._watch_agent(record.name, run_dir)
            names.append(record.name)
        return names

    async def _adopt_one(self, record: MachineRecord, run_dir: Path) -> QemuMachine | None:
        machine = QemuMachine(record=record, run_dir=run_dir, on_change=self._on_change)
        if machine.state is not None:
            return machine
        if proc_starttime(record.pid) != record.starttime:
            machine.mark_gone("QEMU exited while no agent was watching it")
            return machine
        try:
            await machine.attach(connect_timeout=self._connect_timeout)
            await machine.resume()
            await machine.free_orphaned_backends()
        except (HypervisorError, ExecuteError) as err:
            await machine.close()
            if machine.state is not None:  # it ended while we were connecting
                return machine
            log.warning("%s: cannot adopt pid %d: %s", record.name, record.pid, err)
            return None
        log.info("%s: adopted QEMU pid %d", record.name, record.pid)
        return machine

    async def forget(self, name: str) -> None:
        """Drop a machine that has ended, and its run directory; a no-op for unknown names."""
        machine = self._machines.get(name)
        if machine is not None:
            if machine.state is None:
                raise HypervisorError(f"{name} is still running; stop it before forgetting it")
            await self._unwatch_agent(name)
            await machine.close()
            del self._machines[name]
            self._incoming.pop(name, None)
            self._outgoing.pop(name, None)
        else:
            self._refuse_unadopted(self.run_dir(name))
        shutil.rmtree(self.run_dir(name), ignore_errors=True)

    async def close(self) -> None:
        machines, self._machines = list(self._machines.values()), {}
        for name in list(self._agents):
            await self._unwatch_agent(name)
        for machine in machines:
            await machine.close()

    # -- hotplug ---------------------------------------------------------------------------------

    async def set_sockets(self, name: str, sockets: int) -> None:
        machine = self._running(name)
        async with machine.lock:
            slots = plans.cpu_slots(await machine.execute("query-hotpluggable-cpus"))
            try:
                plug = plans.cpu_slots_to_plug(slots, sockets)
            except plans.PlanError as err:
                raise HotplugError(f"{name}: {err}") from err
            for slot in plug:
                device = {"driver": slot.driver, "id": naming.cpu_id(dict(slot.props)), **slot.props}
                await machine.hotplug("device_add", device)

    async def set_memory(self, name: str, memory_bytes: int) -> None:
        machine = self._running(name)
        spec = machine.record.spec
        maximum = max(spec.max_memory_bytes or 0, spec.memory_bytes)
        async with machine.lock:
            summary = await machine.execute("query-memory-size-summary")
            present = plans.dimms(await machine.execute("query-memory-devices"))
            try:
                plan = plans.plan_memory(
                    boot=int(summary["base-memory"]),
                    plugged=[d for d in present if d.id not in machine.unplugs],
                    target=memory_bytes,
                    maximum=maximum,
                    free_slots=(DIMM_SLOTS if maximum > spec.memory_bytes else 0) - len(present),
                )
            except plans.PlanError as err:
                raise HotplugError(f"{name}: {err}") from err
            for dimm in plan.remove:
                await machine.unplug(dimm, timeout=self._unplug_timeout)
            if plan.add:
                dimm = naming.dimm_id(plans.next_dimm_index(present, machine.unplugs))
                memdev = naming.memdev_id(dimm)
                backend = {"qom-type": "memory-backend-ram", "id": memdev, "size": plan.add}
                await machine.hotplug("object-add", backend)
                try:
                    await machine.hotplug("device_add", {"driver": "pc-dimm", "id": dimm, "memdev": memdev})
                except HotplugError:
                    with contextlib.suppress(HypervisorError, ExecuteError):
                        await machine.execute("object-del", {"id": memdev})
                    raise

    async def _plugged(self, machine: QemuMachine, device_id: str) -> bool:
        """Whether ``device_id`` exists already (attach is idempotent); refuses one being unplugged."""
        devices = peripheral_types(await machine.execute("qom-list", {"path": "/machine/peripheral"}))
        if device_id in machine.unplugs:
            raise HotplugError(f"{machine.name}: {device_id} is still being unplugged")
        return device_id in devices

    async def _free_port(self, machine: QemuMachine) -> str:
        ports = plans.free_root_ports(await machine.execute("query-pci"))
        if not ports:
            raise HotplugError(f"{machine.name}: no free PCIe root port (boot with more spare_root_ports)")
        return ports[0]

    async def attach_disk(self, name: str, disk: DiskSpec) -> None:
        # virtio-blk goes on a free root port; scsi on the virtio-scsi controller every guest boots
        # with (QEMU picks a free target). CD-ROM drives are the boot's: only their media change.
        if disk.cdrom or disk.bus not in ("virtio", "scsi"):
            kind = "CD-ROM drives" if disk.cdrom else f"{disk.bus} disks"
            raise HotplugError(
                f"{name}: {kind} cannot be hot-plugged ({disk.name}; virtio and scsi disks can)"
            )
        machine = self._running(name)
        device_id = naming.disk_device_id(disk.name)
        async with machine.lock:
            if await self._plugged(machine, device_id):
                return
            if disk.bus == "virtio":
                device = disk_device(disk, port=await self._free_port(machine), sata=None, scsi_lun=None)
            else:
                device = scsi_hotplug_device(disk)
            await machine.hotplug("blockdev-add", blockdev_node(disk))
            try:
                await machine.hotplug("device_add", device)
            except HotplugError:
                with contextlib.suppress(HypervisorError, ExecuteError):
                    await machine.execute("blockdev-del", {"node-name": naming.drive_node(disk.name)})
                raise

    async def change_medium(self, name: str, disk: DiskSpec) -> None:
        machine = self._running(name)
        async with machine.lock:
            await media.change_medium(machine, disk)

    async def detach_disk(self, name: str, disk_name: str, *, timeout: float) -> None:
        await self._running(name).unplug(naming.disk_device_id(disk_name), timeout=timeout)

    async def attach_nic(self, name: str, nic: NicSpec) -> None:
        if nic.model not in NIC_DRIVERS:
            raise HotplugError(f"{name}: NIC model {nic.model!r} is not supported")
        machine = self._running(name)
        device_id = naming.nic_device_id(nic.name)
        async with machine.lock:
            if await self._plugged(machine, device_id):
                return
            port = await self._free_port(machine)
            await machine.hotplug("netdev_add", {"type": "user", "id": naming.netdev_id(nic.name)})
            try:
                await machine.hotplug("device_add", nic_device(nic, port))
            except HotplugError:
                with contextlib.suppress(HypervisorError, ExecuteError):
                    await machine.execute("netdev_del", {"id": naming.netdev_id(nic.name)})
                raise
            if not nic.link_up:
                await machine.hotplug("set_link", {"name": device_id, "up": False})
            machine.set_link_record(nic.name, nic.link_up)

    async def detach_nic(self, name: str, nic_name: str, *, timeout: float) -> None:
        await self._running(name).unplug(naming.nic_device_id(nic_name), timeout=timeout)

    async def set_link(self, name: str, nic_name: str, *, up: bool) -> None:
        machine = self._running(name)
        async with machine.lock:
            try:
                await machine.execute("set_link", {"name": naming.nic_device_id(nic_name), "up": up})
            except ExecuteError as err:
                raise HypervisorError(f"{name}: set_link {nic_name} refused: {err}") from err
            machine.set_link_record(nic_name, up)

    # -- guest lifecycle -------------------------------------------------------------------------

    async def _lifecycle(self, name: str, command: str, arguments: dict[str, object] | None = None) -> None:
        machine = self._running(name)
        async with machine.lock:
            try:
                await machine.execute(command, arguments)
            except ExecuteError as err:
                raise HypervisorError(f"{name}: {command} refused: {err}") from err

    async def pause(self, name: str) -> None:
        await self._lifecycle(name, "stop")

    async def resume(self, name: str) -> None:
        await self._lifecycle(name, "cont")

    async def reset(self, name: str) -> None:
        await self._lifecycle(name, "system_reset")

    async def soft_reboot(self, name: str) -> None:
        # Upstream's rule: the guest agent's reboot where one answers, else the ACPI-like request.
        watch = self._agents.get(name)
        if watch is not None and watch.connected:
            try:
                await watch.reboot()
                return
            except GuestAgentError as err:
                log.warning("%s: guest agent refused the reboot, sending Ctrl-Alt-Delete: %s", name, err)
        # Ctrl-Alt-Delete on the guest's keyboard: an init reboots cleanly, and a kernel whose init
        # has not claimed the keys (C_A_D on, the test guest's case) restarts at once.
        keys = [{"type": "qcode", "data": k} for k in ("ctrl", "alt", "delete")]
        await self._lifecycle(name, "send-key", {"keys": keys})

    # -- port forwarding -------------------------------------------------------------------------

    async def forward_port(self, name: str, port: int) -> tuple[str, int]:
        """Forward a fresh 127.0.0.1 port to ``port`` of the guest's first NIC; returns (netdev, host port).

        QEMU 7.2's user networking forwards only from host TCP ports (no unix ``hostfwd``), so the
        forward lives on the loopback interface for as long as one connection uses it.
        """
        if not 1 <= port <= 65535:
            raise HypervisorError(f"port: {port} is not a TCP port")
        machine = self._running(name)
        nics = machine.record.spec.nics
        if not nics:
            raise HypervisorError(f"{name} has no network interface to forward a port to")
        netdev = naming.netdev_id(nics[0].name)
        with socket.socket() as probe:  # a free loopback port; QEMU binds it a moment later
            probe.bind(("127.0.0.1", 0))
            host_port = int(probe.getsockname()[1])
        await self._monitor(machine, f"hostfwd_add {netdev} tcp:127.0.0.1:{host_port}-:{port}")
        return netdev, host_port

    async def unforward_port(self, name: str, netdev: str, host_port: int) -> None:
        """Remove a forward ``forward_port`` made (nothing if the machine is gone)."""
        machine = self._machines.get(name)
        if machine is not None and machine.state is None:
            with contextlib.suppress(HypervisorError, QmpUnavailableError):
                await self._monitor(machine, f"hostfwd_remove {netdev} tcp:127.0.0.1:{host_port}")

    async def _monitor(self, machine: QemuMachine, command: str) -> None:
        # hostfwd_add/remove exist only as monitor commands; they answer an error as text.
        async with machine.lock:
            answer = await machine.execute("human-monitor-command", {"command-line": command})
        if str(answer or "").strip():
            raise HypervisorError(f"{machine.name}: {command.split()[0]} refused: {str(answer).strip()}")

    # -- migration -------------------------------------------------------------------------------

    async def migration_layout(self, name: str) -> str:
        machine = self._running(name)
        try:
            return await read_layout(machine)
        except ExecuteError as err:
            raise HypervisorError(f"{name}: QEMU refused a query: {err}") from err

    async def prepare_incoming(
        self, spec: MachineSpec, layout: str, *, listen_host: str, copied_disks: tuple[str, ...]
    ) -> MigrationEndpoint:
        existing = self._machines.get(spec.name)
        waiting = self._incoming.get(spec.name)
        if existing is not None and existing.state is None and waiting is not None:
            return waiting.endpoint
        if existing is not None:
            raise HypervisorError(f"{spec.name} exists here: cannot receive it")
        tcp_uri(listen_host, 0)
        parsed = parse_layout(layout, spec)
        if unknown := set(copied_disks) - {*parsed.boot.disks, *parsed.disks}:
            raise HypervisorError(f"{spec.name}: disks to copy that the source lacks: {sorted(unknown)}")
        boot, placement = incoming_boot(parsed, spec)
        listening: list[IncomingTarget] = []

        async def setup(machine: QemuMachine) -> None:
            await plug_layout(machine, parsed, spec)
            links = dict(parsed.links)
            listening.append(
                await IncomingTarget.listen(machine, host=listen_host, copied=copied_disks, links=links)
            )

        machine = await self._launch(
            boot, setup=setup, placement=placement, incoming=True, links=parsed.links
        )
        self._incoming[spec.name] = target = listening[0]
        machine.on_migration = lambda status: self._incoming_event(machine, target, status)
        return target.endpoint

    def _incoming_event(self, machine: QemuMachine, target: IncomingTarget, status: str) -> None:
        if status == "completed" and not target.arrived:
            machine.spawn(self._arrive(machine, target))

    async def _arrive(self, machine: QemuMachine, target: IncomingTarget) -> None:
        try:
            await target.finish(machine)
        except (HypervisorError, ExecuteError) as err:
            log.error("%s: the migrated guest could not be resumed here: %s", machine.name, err)
        self._incoming.pop(machine.name, None)
        self._on_change(machine.name)

    async def migrate(
        self,
        name: str,
        target: MigrationEndpoint,
        *,
        copied_disks: tuple[str, ...],
        settings: MigrationSettings,
    ) -> None:
        machine = self._running(name)
        current = self._outgoing.get(name)
        if current is not None and not current.progress.finished:
            return
        tcp_uri(target.host, target.port)
        outgoing = OutgoingMigration(target=target, copied=copied_disks, settings=settings)
        self._outgoing[name] = outgoing

        async def run() -> None:
            await outgoing.run(machine)
            self._on_change(name)

        machine.spawn(run())

    async def migration_progress(self, name: str) -> MigrationProgress:
        machine = self._get(name)
        outgoing = self._outgoing.get(name)
        if outgoing is None:
            return MigrationProgress(MigrationStatus.NONE)
        # Read QEMU afresh rather than the last poll, so a migration that just completed reports
        # its end (and downtime) as soon as the machine observes as Migrated.
        return await outgoing.current(machine)

    async def cancel_migration(self, name: str) -> None:
        self._get(name)
        outgoing = self._outgoing.get(name)
        if outgoing is not None:
            outgoing.cancel()

    # -- observation -----------------------------------------------------------------------------

    async def observe(self, name: str) -> ObservedMachine:
        machine = self._get(name)
        if machine.state is None and name in self._incoming:
            return ObservedMachine(name=name, state=MachineState.INCOMING, reason="waiting for the migration")
        if machine.state is None:
            try:
                return await self._query(machine)
            except QmpUnavailableError:
                if not await machine.wait_exit(1.0):
                    raise
            except ExecuteError as err:
                raise HypervisorError(f"{name}: QEMU refused a query: {err}") from err
        assert machine.state is not None
        return ObservedMachine(name=name, state=machine.state, reason=machine.reason)

    async def guest_agent_query(self, name: str, what: str) -> dict[str, object]:
        """The guest agent's answer for the API's ``what`` (``guestosinfo``, ``userlist``,
        ``filesystemlist``); HypervisorError when the machine has no agent answering."""
        watch = self._agents.get(name)
        if watch is None or self._get(name).state is not None:
            raise HypervisorError(f"{name} is not running")
        try:
            return await watch.query(what)
        except GuestAgentError as err:
            raise HypervisorError(str(err)) from err

    async def _query(self, machine: QemuMachine) -> ObservedMachine:
        status, cpus, memory, block, peripheral = await asyncio.gather(
            machine.execute("query-status"),
            machine.execute("query-cpus-fast"),
            machine.execute("query-memory-size-summary"),
            machine.execute("query-block"),
            machine.execute("qom-list", {"path": "/machine/peripheral"}),
        )
        devices = peripheral_types(peripheral)
        nics = [n for dev in devices if (n := naming.nic_name_of(dev)) is not None]
        macs = await asyncio.gather(*(self._mac(machine, nic) for nic in nics))
        watch = self._agents.get(machine.name)
        observed = observed_machine(
            machine.name,
            status=status,
            cpus=cpus,
            memory=memory,
            block=block,
            peripherals=devices,
            macs=dict(zip(nics, macs, strict=True)),
            links=machine.record.links,
            pending_unplugs=machine.unplugs.keys(),
        )
        if watch is None or not watch.connected:
            return observed
        return dataclasses.replace(observed, agent_connected=True, guest_interfaces=watch.interfaces)

    async def _mac(self, machine: QemuMachine, nic: str) -> str:
        path = f"/machine/peripheral/{naming.nic_device_id(nic)}"
        try:
            return str(await machine.execute("qom-get", {"path": path, "property": "mac"}))
        except ExecuteError:  # unplugged between the listing and this query
            return ""
