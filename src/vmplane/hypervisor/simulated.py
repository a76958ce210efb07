"""``SimulatedHypervisor``: the Hypervisor protocol without guests, behaving like ``QemuHypervisor``.

For fast tests, scale benchmarks and ``vmplane serve --hypervisor simulated``; never a stand-in for
the QEMU tests of guest behaviour; ``tests/contract/test_hypervisor_contract.py`` holds both drivers
to one contract. It keeps the driver's contract where an agent could notice the
difference: requests take ``latency`` seconds and report through ``on_change``; a boot passes through
Starting; attaching an existing device is a no-op; a vCPU decrease, memory outside [boot, max], a
memory change that is not a whole number of 128 MiB blocks, a NIC model QEMU lacks, a CD-ROM or
non-virtio hotplug and running out of spare PCIe root ports are refused; an unplug the
guest ignores stays pending (``observe`` lists it) and fails with ``UnplugTimeoutError``; a machine
left running by an earlier driver must be ``adopt``-ed before it can be used or started again.

Machines live in a ``SimulatedHost`` that outlives a driver: a new ``SimulatedHypervisor`` on the same
host is a restarted agent's driver, as a new ``QemuHypervisor`` on the same ``base_dir`` would be.
Failures are injected through a driver into its host (``refuse_hotplug``, ``never_ack_unplug``,
``kill``, ``power_off``, ``hold_boot``, ...), so every driver on that host sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from vmplane.hypervisor.base import (
    DiskSpec,
    HotplugError,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    NicSpec,
    ObservedDisk,
    ObservedMachine,
    ObservedNic,
    OnChange,
    UnplugTimeoutError,
)
from vmplane.hypervisor.migration import (
    MigrationEndpoint,
    MigrationProgress,
    MigrationSettings,
    MigrationStatus,
)
from vmplane.hypervisor.qemu.argv import NIC_DRIVERS
from vmplane.hypervisor.qemu.plans import MEMORY_BLOCK_BYTES
from vmplane.hypervisor.simulated_migration import (
    GuestState,
    Incoming,
    Outgoing,
    layout_of,
    listen,
    parse_layout,
    stream_guest,
)

__all__ = ["SIMULATED_CAPACITY", "HotplugKind", "SimulatedHost", "SimulatedHypervisor"]

#: What the Node of a simulated host reports: its guests take nothing of the real host, so its
#: capacity is a made-up large machine, not this host's (which would limit a scale test to a
#: laptop's size). ``vmplane serve --hypervisor simulated`` registers its node with it. Sized for
#: the fleet bench on one node: 10,000 guests of 64 MiB after a live change to two vCPUs each
#: (100m per vCPU at the default allocation ratio) need 2,000 CPUs and about 1 TiB.
SIMULATED_CAPACITY = {"cpu": "4096", "memory": "4Ti"}

HotplugKind = Literal["cpu", "memory", "disk", "nic", "link"]
_MIB = 1 << 20
_LIVE = (MachineState.STARTING, MachineState.RUNNING)


@dataclass
class _Machine:
    """One simulated guest; mutated only by the driver and the host's injection methods."""

    spec: MachineSpec
    boot: int
    state: MachineState = MachineState.STARTING
    reason: str = ""
    sockets: int = 0
    memory_bytes: int = 0
    disks: dict[str, DiskSpec] = field(default_factory=dict)
    nics: dict[str, NicSpec] = field(default_factory=dict)
    #: QEMU-style device id (``disk-<name>``, ``nic-<name>``) -> set once the guest releases it.
    unplugs: dict[str, asyncio.Event] = field(default_factory=dict)
    ignores_powerdown: bool = False
    paused: bool = False
    #: Guest reboots inside this machine (``reset``, ``soft_reboot``): the machine and its boot stay.
    reboots: int = 0
    #: A migration target's listening socket, or a source's migration.
    incoming: Incoming | None = None
    outgoing: Outgoing | None = None

    def observed(self, name: str) -> ObservedMachine:
        if self.state not in _LIVE:  # as QEMU: an ended machine reports only how it ended
            return ObservedMachine(name=name, state=self.state, reason=self.reason)
        return ObservedMachine(
            name=name,
            state=self.state,
            reason=self.reason,
            sockets=self.sockets,
            cores=self.spec.cores,
            threads=self.spec.threads,
            vcpus=self.sockets * self.spec.cores * self.spec.threads,
            memory_bytes=self.memory_bytes,
            disks=tuple(ObservedDisk(d.name, d.path, d.cdrom) for _, d in sorted(self.disks.items())),
            nics=tuple(ObservedNic(n.name, n.mac, n.link_up) for _, n in sorted(self.nics.items())),
            pending_unplugs=tuple(sorted(self.unplugs)),
            paused=self.paused,
        )

    def remove(self, device: str) -> None:
        """The guest released ``device`` (a QEMU-style id)."""
        kind, _, name = device.partition("-")
        (self.disks if kind == "disk" else self.nics).pop(name, None)
        self.unplugs.pop(device, None)

    def free_root_ports(self) -> int:
        # As q35 under qemu.argv: a port per boot-time virtio disk and NIC, plus the spares.
        ports = _on_ports(self.spec.disks, self.spec.nics) + self.spec.spare_root_ports
        return ports - _on_ports(self.disks.values(), self.nics.values())


def _on_ports(disks: Iterable[DiskSpec], nics: Iterable[NicSpec]) -> int:
    return sum(1 for d in disks if d.bus == "virtio" and not d.cdrom) + sum(1 for _ in nics)


@dataclass
class SimulatedHost:
    """The machines of one simulated host, the failures injected into it, and who is listening."""

    machines: dict[str, _Machine] = field(default_factory=dict)
    refused: set[HotplugKind] = field(default_factory=set)
    unplugs_acknowledged: bool = True
    #: Machines whose boots never finish: they stay Starting, so their VMI never becomes Ready.
    held_boots: set[str] = field(default_factory=set)
    #: Incremented by every boot; a machine's ``boot`` number tells tests whether it was restarted.
    boots: int = 0
    listeners: list[OnChange] = field(default_factory=list)
    #: How long a migration from this host copies before the guest moves (cancel works meanwhile).
    migration_seconds: float = 0.0
    #: Targets on this host refuse incoming guests (the migration fails; the guest stays on its source).
    refuse_incoming: bool = False

    def notify(self, name: str) -> None:
        """Tell every open driver that ``name`` may look different."""
        for listener in list(self.listeners):
            listener(name)

    def get(self, name: str) -> _Machine:
        """A machine by name (MachineNotFoundError if there is none)."""
        try:
            return self.machines[name]
        except KeyError as err:
            raise MachineNotFoundError(name) from err


class SimulatedHypervisor:
    """The Hypervisor protocol over a ``SimulatedHost`` (a fresh host unless one is given).

    ``latency`` is how long every request takes and how long a boot stays Starting;
    ``unplug_timeout`` bounds the DIMM removal of a memory decrease, as in ``QemuHypervisor``.
    ``sleep`` is injectable so a test clock can drive it.
    """

    def __init__(
        self,
        *,
        on_change: OnChange,
        host: SimulatedHost | None = None,
        latency: float = 0.0,
        unplug_timeout: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.host = host if host is not None else SimulatedHost()
        self._on_change = on_change
        self._latency = latency
        self._unplug_timeout = unplug_timeout
        self._sleep = sleep
        self._known: set[str] = set()
        self._boots: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        self.host.listeners.append(on_change)

    # -- failure injection: what happens to a guest without the agent asking --------------------

    def refuse_hotplug(self, kind: HotplugKind, *, refuse: bool = True) -> None:
        """Make plugs and unplugs of ``kind`` fail with HotplugError (or succeed again)."""
        (self.host.refused.add if refuse else self.host.refused.discard)(kind)

    def never_ack_unplug(self, *, never: bool = True) -> None:
        """Make guests ignore unplug requests (they stay pending and time out), or honour them again."""
        self.host.unplugs_acknowledged = not never

    def ack_unplugs(self, name: str) -> None:
        """The guest finally releases every device whose unplug it ignored."""
        machine = self.host.get(name)
        for device, released in list(machine.unplugs.items()):
            machine.remove(device)
            released.set()
        self.host.notify(name)

    def hold_boot(self, name: str, *, hold: bool = True) -> None:
        """Boots of ``name`` stay Starting while held; releasing lets a held boot finish at once."""
        if hold:
            self.host.held_boots.add(name)
            return
        self.host.held_boots.discard(name)
        machine = self.host.machines.get(name)
        if machine is not None and machine.state is MachineState.STARTING and name not in self._boots:
            machine.state = MachineState.RUNNING
            self.host.notify(name)

    def ignore_powerdown(self, name: str) -> None:
        """The guest ignores ACPI power-down: ``stop`` waits for the grace period, then kills it."""
        self.host.get(name).ignores_powerdown = True

    def kill(self, name: str, *, reason: str = "QEMU was killed by SIGKILL") -> None:
        """The hypervisor process dies: the machine is Crashed."""
        self._end(self.host.get(name), name, MachineState.CRASHED, reason)

    def power_off(self, name: str, *, reason: str = "guest shut down") -> None:
        """The guest shuts itself down: the machine is Stopped."""
        self._end(self.host.get(name), name, MachineState.STOPPED, reason)

    def slow_migrations(self, seconds: float) -> None:
        """Migrations from this host copy for ``seconds`` before the guest moves."""
        self.host.migration_seconds = seconds

    def refuse_incoming_guests(self, *, refuse: bool = True) -> None:
        """Migration targets on this host refuse the guest (or accept it again)."""
        self.host.refuse_incoming = refuse

    def boot_of(self, name: str) -> int:
        """The boot number of a machine: it changes only if the machine was started again."""
        return self.host.get(name).boot

    def reboots_of(self, name: str) -> int:
        """How often the guest rebooted inside its machine (reset or soft reboot)."""
        return self.host.get(name).reboots

    def _end(self, machine: _Machine, name: str, state: MachineState, reason: str) -> None:
        if machine.state is MachineState.INCOMING:
            self._end_incoming(machine, name, reason, state=state)
            return
        if machine.state not in _LIVE:
            return
        machine.state, machine.reason = state, reason
        for released in machine.unplugs.values():
            released.set()  # unplug waiters wake up and see that the machine ended
        self.host.notify(name)

    # -- helpers ---------------------------------------------------------------------------------

    def _machine(self, name: str) -> _Machine:
        if self._closed:
            raise HypervisorError("the driver is closed")
        if name not in self._known:
            raise MachineNotFoundError(name)
        return self.host.get(name)

    def _running(self, name: str) -> _Machine:
        machine = self._machine(name)
        if machine.state is not MachineState.RUNNING:
            raise HypervisorError(f"{name} is not running ({machine.state.value}: {machine.reason})")
        return machine

    async def _delay(self, seconds: float | None = None) -> None:
        delay = self._latency if seconds is None else seconds
        if delay > 0:
            await self._sleep(delay)

    def _check(self, name: str, kind: HotplugKind) -> None:
        if kind in self.host.refused:
            raise HotplugError(f"{name}: {kind} hotplug refused by the hypervisor (injected failure)")

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, spec: MachineSpec) -> None:
        """Accept the machine in state Starting; it is Running ``latency`` seconds later."""
        existing = self.host.machines.get(spec.name)
        if existing is not None:
            if spec.name not in self._known and existing.state in _LIVE:
                raise HypervisorError(f"{spec.name} is already running; adopt() it")
            if existing.state in _LIVE:
                return
            raise HypervisorError(
                f"{spec.name} exists ({existing.state.value}); forget it before starting again"
            )
        _validate(spec)
        await self._delay()
        self.host.boots += 1
        machine = _Machine(
            spec=spec,
            boot=self.host.boots,
            sockets=spec.sockets,
            memory_bytes=spec.memory_bytes,
            disks={d.name: d for d in spec.disks},
            nics={n.name: n for n in spec.nics},
        )
        self.host.machines[spec.name] = machine
        self._known.add(spec.name)
        if self._latency <= 0:
            self._booted(spec.name, machine)
        else:
            loop = asyncio.get_running_loop()
            self._boots[spec.name] = loop.call_later(self._latency, self._booted, spec.name, machine)
        self.host.notify(spec.name)

    def _booted(self, name: str, machine: _Machine) -> None:
        self._boots.pop(name, None)
        if machine.state is MachineState.STARTING and name not in self.host.held_boots:
            machine.state = MachineState.RUNNING
            self.host.notify(name)

    async def stop(self, name: str, *, grace_period: float) -> None:
        """ACPI power-down after ``latency``; a guest that ignores it is killed after the grace period."""
        machine = self._machine(name)
        if machine.state is MachineState.INCOMING:
            self._end_incoming(machine, name, "stopped before the guest arrived")
            return
        if machine.state not in _LIVE:
            return
        if machine.ignores_powerdown:
            await self._delay(grace_period)
            reason = f"killed after the {grace_period:g}s grace period"
        else:
            await self._delay()
            reason = "stopped"
        self._end(machine, name, MachineState.STOPPED, reason)

    async def pause(self, name: str) -> None:
        """Stop the vCPUs after ``latency``."""
        await self._set_paused(name, paused=True)

    async def resume(self, name: str) -> None:
        """Run the vCPUs again after ``latency``."""
        await self._set_paused(name, paused=False)

    async def _set_paused(self, name: str, *, paused: bool) -> None:
        machine = self._running(name)
        await self._delay()
        machine.paused = paused
        self.host.notify(name)

    async def reset(self, name: str) -> None:
        """A hard reset: the guest reboots inside the same machine (a pause survives it, as in QEMU)."""
        machine = self._running(name)
        await self._delay()
        machine.reboots += 1
        self.host.notify(name)

    async def soft_reboot(self, name: str) -> None:
        """The guest reboots itself; a paused guest cannot, as its vCPUs do not run."""
        machine = self._running(name)
        if machine.paused:
            raise HypervisorError(f"{name} is paused: its guest cannot reboot itself")
        await self._delay()
        machine.reboots += 1
        self.host.notify(name)

    async def adopt(self) -> list[str]:
        """Take over every machine on the host, running or ended; returns their names."""
        self._known.update(self.host.machines)
        return sorted(self.host.machines)

    async def forget(self, name: str) -> None:
        """Drop an ended machine; a no-op for unknown names."""
        machine = self.host.machines.get(name)
        if machine is None:
            return
        if machine.state in _LIVE:
            if name not in self._known:
                raise HypervisorError(f"{name} is already running; adopt() it")
            raise HypervisorError(f"{name} is still running; stop it before forgetting it")
        del self.host.machines[name]
        self._known.discard(name)

    async def close(self) -> None:
        """Stop listening; machines keep running on the host for the next driver to adopt."""
        self._closed = True
        for handle in self._boots.values():
            handle.cancel()
        self._boots.clear()
        # A boot this driver was completing completes anyway: the guest does not need the driver.
        for machine in self.host.machines.values():
            if machine.state is MachineState.STARTING:
                machine.state = MachineState.RUNNING
        with contextlib.suppress(ValueError):
            self.host.listeners.remove(self._on_change)

    # -- hotplug ---------------------------------------------------------------------------------

    async def set_sockets(self, name: str, sockets: int) -> None:
        """Plug vCPUs up to ``sockets`` sockets (never beyond maxSockets; never unplug)."""
        machine = self._running(name)
        self._check(name, "cpu")
        maximum = machine.spec.max_sockets or machine.spec.sockets
        if sockets < machine.sockets:
            raise HotplugError(f"{name}: vCPU unplug is not supported ({machine.sockets} -> {sockets})")
        if sockets > maximum:
            raise HotplugError(f"{name}: {sockets} sockets exceed the maximum of {maximum}")
        if sockets == machine.sockets:
            return
        await self._delay()
        machine.sockets = sockets
        self.host.notify(name)

    async def set_memory(self, name: str, memory_bytes: int) -> None:
        """Resize guest memory between the boot size and the maximum, in whole MiB."""
        machine = self._running(name)
        self._check(name, "memory")
        boot, ceiling = machine.spec.memory_bytes, machine.spec.max_memory_bytes or machine.spec.memory_bytes
        if memory_bytes % _MIB or not boot <= memory_bytes <= ceiling:
            raise HotplugError(f"{name}: memory {memory_bytes} is not a MiB multiple in [{boot}, {ceiling}]")
        if (memory_bytes - machine.memory_bytes) % MEMORY_BLOCK_BYTES:
            # As QEMU's: Linux onlines hot-plugged memory in 128 MiB blocks.
            raise HotplugError(
                f"{name}: memory changes must be multiples of {MEMORY_BLOCK_BYTES >> 20} MiB "
                f"({machine.memory_bytes} -> {memory_bytes})"
            )
        if memory_bytes == machine.memory_bytes:
            return
        if memory_bytes < machine.memory_bytes and not self.host.unplugs_acknowledged:
            await self._delay(self._unplug_timeout)  # the guest keeps its DIMMs
            raise UnplugTimeoutError(
                f"{name}: the guest did not release memory within {self._unplug_timeout:g}s"
            )
        await self._delay()
        machine.memory_bytes = memory_bytes
        self.host.notify(name)

    async def attach_disk(self, name: str, disk: DiskSpec) -> None:
        """Plug a virtio disk on a spare root port, or a scsi disk on the SCSI controller; a no-op if
        it is there already. As QEMU: CD-ROM drives and SATA disks are the boot's."""
        machine = self._running(name)
        self._check(name, "disk")
        if disk.cdrom or disk.bus not in ("virtio", "scsi"):
            kind = "CD-ROM drives" if disk.cdrom else f"{disk.bus} disks"
            raise HotplugError(
                f"{name}: {kind} cannot be hot-plugged ({disk.name}; virtio and scsi disks can)"
            )
        self._plug_check(machine, name, f"disk-{disk.name}", present=disk.name in machine.disks)
        if disk.name in machine.disks:
            return
        await self._delay()
        machine.disks[disk.name] = disk
        self.host.notify(name)

    async def change_medium(self, name: str, disk: DiskSpec) -> None:
        """Insert, change or eject the medium of a plugged CD-ROM drive; a no-op if it holds it already."""
        machine = self._running(name)
        self._check(name, "disk")
        present = machine.disks.get(disk.name)
        if present is None or not present.cdrom:
            raise HotplugError(f"{name}: no CD-ROM drive {disk.name} to change the medium of")
        if present.path == disk.path:
            return
        await self._delay()
        machine.disks[disk.name] = disk
        self.host.notify(name)

    async def detach_disk(self, name: str, disk_name: str, *, timeout: float) -> None:
        """Unplug a disk and wait for the guest to release it."""
        machine = self._running(name)
        self._check(name, "disk")
        if disk_name in machine.disks:
            await self._unplug(machine, name, f"disk-{disk_name}", timeout)

    async def attach_nic(self, name: str, nic: NicSpec) -> None:
        """Plug a NIC on a spare root port; a no-op if it is there already."""
        machine = self._running(name)
        self._check(name, "nic")
        if nic.model not in NIC_DRIVERS:
            raise HotplugError(f"{name}: NIC model {nic.model!r} is not supported")
        self._plug_check(machine, name, f"nic-{nic.name}", present=nic.name in machine.nics)
        if nic.name in machine.nics:
            return
        await self._delay()
        machine.nics[nic.name] = nic
        self.host.notify(name)

    async def detach_nic(self, name: str, nic_name: str, *, timeout: float) -> None:
        """Unplug a NIC and wait for the guest to release it."""
        machine = self._running(name)
        self._check(name, "nic")
        if nic_name in machine.nics:
            await self._unplug(machine, name, f"nic-{nic_name}", timeout)

    async def set_link(self, name: str, nic_name: str, *, up: bool) -> None:
        """Set a NIC's link state."""
        machine = self._running(name)
        self._check(name, "link")
        nic = machine.nics.get(nic_name)
        if nic is None:
            raise HypervisorError(f"{name}: set_link {nic_name} refused: no such device")
        await self._delay()
        machine.nics[nic_name] = replace(nic, link_up=up)
        self.host.notify(name)

    def _plug_check(self, machine: _Machine, name: str, device: str, *, present: bool) -> None:
        if device in machine.unplugs:
            raise HotplugError(f"{name}: {device} is still being unplugged")
        if not present and machine.free_root_ports() <= 0:
            raise HotplugError(f"{name}: no free PCIe root port (boot with more spare_root_ports)")

    async def _unplug(self, machine: _Machine, name: str, device: str, timeout: float) -> None:
        released = machine.unplugs.get(device)
        if released is None:
            released = asyncio.Event()
            machine.unplugs[device] = released
            if self.host.unplugs_acknowledged:
                await self._delay()
                machine.remove(device)
                released.set()
                self.host.notify(name)
            else:
                self.host.notify(name)  # the unplug is now pending, which observe shows
        try:
            async with asyncio.timeout(timeout):
                await released.wait()
        except TimeoutError as err:
            raise UnplugTimeoutError(
                f"{name}: the guest did not release {device} within {timeout:g}s"
            ) from err
        if machine.state not in _LIVE:
            raise HypervisorError(f"{name} ended while {device} was being unplugged")

    # -- migration -------------------------------------------------------------------------------

    async def migration_layout(self, name: str) -> str:
        """The source's devices now (see ``simulated_migration.SimulatedLayout``)."""
        machine = self._running(name)
        links = {n.name: n.link_up for n in machine.nics.values()}
        return layout_of(machine.sockets, machine.memory_bytes, machine.disks, links)

    async def prepare_incoming(
        self, spec: MachineSpec, layout: str, *, listen_host: str, copied_disks: tuple[str, ...]
    ) -> MigrationEndpoint:
        """A target machine with the source's devices, Incoming until the guest streams in (its disks
        travel with the guest's state: there is no separate disk stream)."""
        if self._closed:
            raise HypervisorError("the driver is closed")
        existing = self.host.machines.get(spec.name)
        if existing is not None and existing.state is MachineState.INCOMING and existing.incoming:
            port = int(existing.incoming.server.sockets[0].getsockname()[1])
            return MigrationEndpoint(host=listen_host, port=port)
        if existing is not None:
            raise HypervisorError(f"{spec.name} exists here ({existing.state.value}): cannot receive it")
        _validate(spec)
        wanted = parse_layout(layout, spec)
        if unknown := set(copied_disks) - set(wanted.disks):
            raise HypervisorError(f"{spec.name}: disks to copy that the source lacks: {sorted(unknown)}")
        await self._delay()
        machine = _Machine(
            spec=spec,
            boot=0,
            state=MachineState.INCOMING,
            sockets=wanted.sockets,
            memory_bytes=wanted.memory_bytes,
            disks={d.name: d for d in spec.disks if d.name in wanted.disks},
            nics={
                n.name: replace(n, link_up=wanted.links.get(n.name, n.link_up))
                for n in spec.nics
                if n.name in wanted.nics
            },
        )

        def arrive(state: GuestState) -> bool:
            if self.host.refuse_incoming or machine.state is not MachineState.INCOMING:
                return False
            machine.state, machine.boot, machine.reboots = MachineState.RUNNING, state.boot, state.reboots
            machine.paused = state.paused
            if machine.incoming is not None:
                machine.incoming.close()
                machine.incoming = None
            self.host.notify(spec.name)
            return True

        machine.incoming, port = await listen(listen_host, arrive)
        self.host.machines[spec.name] = machine
        self._known.add(spec.name)
        self.host.notify(spec.name)
        return MigrationEndpoint(host=listen_host, port=port)

    def _end_incoming(
        self, machine: _Machine, name: str, reason: str, *, state: MachineState = MachineState.STOPPED
    ) -> None:
        if machine.incoming is not None:
            machine.incoming.close()
            machine.incoming = None
        machine.state, machine.reason = state, reason
        self.host.notify(name)

    async def migrate(
        self,
        name: str,
        target: MigrationEndpoint,
        *,
        copied_disks: tuple[str, ...],
        settings: MigrationSettings,
    ) -> None:
        """Copy for ``migration_seconds``, then stream the guest; Migrated once the target runs it."""
        machine = self._running(name)
        if machine.outgoing is not None and not machine.outgoing.progress().finished:
            return
        await self._delay()
        outgoing = Outgoing(total_bytes=machine.memory_bytes, seconds=self.host.migration_seconds)
        machine.outgoing = outgoing
        state = GuestState(boot=machine.boot, reboots=machine.reboots, paused=machine.paused)

        async def run() -> None:
            try:
                async with asyncio.timeout(settings.completion_timeout):
                    await self._sleep(self.host.migration_seconds)
                    await stream_guest(target, state)
            except asyncio.CancelledError:
                outgoing.status, outgoing.error = MigrationStatus.CANCELLED, "the migration was cancelled"
            except TimeoutError:
                outgoing.status = MigrationStatus.FAILED
                outgoing.error = f"the migration did not complete within {settings.completion_timeout:g}s"
            except HypervisorError as err:
                outgoing.status, outgoing.error = MigrationStatus.FAILED, str(err)
            else:
                outgoing.status = MigrationStatus.COMPLETED
                machine.state, machine.reason = MachineState.MIGRATED, f"migrated to {target.host}"
            self.host.notify(name)

        outgoing.task = asyncio.get_running_loop().create_task(run())
        self.host.notify(name)

    async def migration_progress(self, name: str) -> MigrationProgress:
        """The source's migration as it stands."""
        machine = self._machine(name)
        if machine.outgoing is None:
            return MigrationProgress(status=MigrationStatus.NONE)
        return machine.outgoing.progress()

    async def cancel_migration(self, name: str) -> None:
        """Stop the copy; the guest stays here. A no-op once the migration ended."""
        machine = self._machine(name)
        outgoing = machine.outgoing
        if outgoing is None or outgoing.task is None or outgoing.task.done():
            return
        outgoing.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outgoing.task

    # -- observation -----------------------------------------------------------------------------

    async def observe(self, name: str) -> ObservedMachine:
        """The machine as the host has it now."""
        return self._machine(name).observed(name)


def _validate(spec: MachineSpec) -> None:
    """Refuse what QEMU's command line would refuse (see ``qemu.argv``)."""
    for what, value in (("sockets", spec.sockets), ("cores", spec.cores), ("threads", spec.threads)):
        if value < 1:
            raise HypervisorError(f"{spec.name}: {what} must be at least 1, got {value}")
    if spec.max_sockets and spec.max_sockets < spec.sockets:
        raise HypervisorError(f"{spec.name}: max_sockets {spec.max_sockets} is below sockets {spec.sockets}")
    if spec.memory_bytes <= 0 or spec.memory_bytes % _MIB:
        raise HypervisorError(f"{spec.name}: memory_bytes must be a positive multiple of 1 MiB")
    if spec.max_memory_bytes is not None and spec.max_memory_bytes < spec.memory_bytes:
        raise HypervisorError(f"{spec.name}: max_memory_bytes is below memory_bytes")
    for nic in spec.nics:
        if nic.model not in NIC_DRIVERS:
            raise HypervisorError(f"{spec.name}: NIC {nic.name}: unsupported model {nic.model!r}")
