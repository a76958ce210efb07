"""``SimulatedHypervisor``: a Hypervisor without guests, that still behaves like one.

Operations take ``latency`` seconds and complete asynchronously; failures can be injected (a refused
hotplug, an unplug the guest never acknowledges, a process that dies, a guest that powers off).
Machine state lives in a ``SimulatedHost`` that outlives a driver instance, so a new driver on the
same host adopts running machines as a restarted agent would. For tests, scale benchmarks and
``vmplane serve --hypervisor simulated``; never a stand-in for the QEMU tests of guest behaviour.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from vmplane.agent.hypervisor import (
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

__all__ = ["HotplugKind", "SimulatedHost", "SimulatedHypervisor"]

HotplugKind = Literal["cpu", "memory", "disk", "nic", "link"]


@dataclass
class _Machine:
    spec: MachineSpec
    state: MachineState = MachineState.STARTING
    sockets: int = 0
    memory_bytes: int = 0
    disks: dict[str, ObservedDisk] = field(default_factory=dict)
    nics: dict[str, ObservedNic] = field(default_factory=dict)
    reason: str = ""


@dataclass
class SimulatedHost:
    """The machines of one simulated host and the failures injected into it."""

    machines: dict[str, _Machine] = field(default_factory=dict)
    refused: set[HotplugKind] = field(default_factory=set)
    unplugs_acknowledged: bool = True


class SimulatedHypervisor:
    """The Hypervisor protocol over a ``SimulatedHost``."""

    def __init__(
        self, *, on_change: OnChange, host: SimulatedHost | None = None, latency: float = 0.0
    ) -> None:
        self.host = host if host is not None else SimulatedHost()
        self._on_change = on_change
        self._latency = latency
        self._tasks: set[asyncio.Task[None]] = set()

    # Failure injection -------------------------------------------------------------------------

    def refuse_hotplug(self, kind: HotplugKind, *, refuse: bool = True) -> None:
        """Make hotplugs of ``kind`` fail (or succeed again)."""
        if refuse:
            self.host.refused.add(kind)
        else:
            self.host.refused.discard(kind)

    def never_ack_unplug(self, *, never: bool = True) -> None:
        """Make guests ignore unplug requests, so unplugs time out."""
        self.host.unplugs_acknowledged = not never

    def kill(self, name: str) -> None:
        """The hypervisor process dies: the machine is CRASHED."""
        machine = self._machine(name)
        machine.state, machine.reason = MachineState.CRASHED, "the hypervisor process was killed"
        self._on_change(name)

    def power_off(self, name: str) -> None:
        """The guest shuts itself down: the machine is STOPPED."""
        machine = self._machine(name)
        machine.state, machine.reason = MachineState.STOPPED, "the guest powered off"
        self._on_change(name)

    # The protocol ------------------------------------------------------------------------------

    def _machine(self, name: str) -> _Machine:
        try:
            return self.host.machines[name]
        except KeyError as err:
            raise MachineNotFoundError(name) from err

    def _running(self, name: str) -> _Machine:
        machine = self._machine(name)
        if machine.state is not MachineState.RUNNING:
            raise HypervisorError(f"machine {name} is {machine.state.value}, not Running")
        return machine

    async def _delay(self) -> None:
        if self._latency > 0:
            await asyncio.sleep(self._latency)

    def _check(self, kind: HotplugKind) -> None:
        if kind in self.host.refused:
            raise HotplugError(f"{kind} hotplug refused by the hypervisor (injected failure)")

    async def start(self, spec: MachineSpec) -> None:
        """Create the machine; it becomes Running after ``latency``."""
        existing = self.host.machines.get(spec.name)
        if existing is not None and existing.state in (MachineState.STARTING, MachineState.RUNNING):
            return
        if existing is not None:
            raise HypervisorError(f"machine {spec.name} is {existing.state.value}; forget it first")
        machine = _Machine(
            spec=spec,
            sockets=spec.sockets,
            memory_bytes=spec.memory_bytes,
            disks={d.name: ObservedDisk(d.name, d.path, d.cdrom) for d in spec.disks},
            nics={n.name: ObservedNic(n.name, n.mac, n.link_up) for n in spec.nics},
        )
        self.host.machines[spec.name] = machine
        self._later(spec.name, machine)

    def _later(self, name: str, machine: _Machine) -> None:
        # Booting completes asynchronously, as a real hypervisor's would.
        async def run() -> None:
            await self._delay()
            if machine.state is MachineState.STARTING:
                machine.state = MachineState.RUNNING
            self._on_change(name)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, name: str, *, grace_period: float) -> None:
        """Power the machine off (idempotent)."""
        machine = self.host.machines.get(name)
        if machine is None or machine.state in (MachineState.STOPPED, MachineState.CRASHED):
            return
        await self._delay()
        machine.state, machine.reason = MachineState.STOPPED, "stopped"
        self._on_change(name)

    async def set_sockets(self, name: str, sockets: int) -> None:
        """Plug vCPUs up to ``sockets`` (never beyond maxSockets; never unplug)."""
        machine = self._running(name)
        self._check("cpu")
        if sockets > max(machine.spec.max_sockets, machine.spec.sockets) or sockets < machine.sockets:
            raise HotplugError(f"cannot go from {machine.sockets} to {sockets} sockets")
        await self._delay()
        machine.sockets = sockets
        self._on_change(name)

    async def set_memory(self, name: str, memory_bytes: int) -> None:
        """Resize guest memory between the boot size and maxGuest."""
        machine = self._running(name)
        self._check("memory")
        ceiling = machine.spec.max_memory_bytes or machine.spec.memory_bytes
        if not machine.spec.memory_bytes <= memory_bytes <= ceiling:
            raise HotplugError(f"memory {memory_bytes} is outside [{machine.spec.memory_bytes}, {ceiling}]")
        await self._delay()
        machine.memory_bytes = memory_bytes
        self._on_change(name)

    async def attach_disk(self, name: str, disk: DiskSpec) -> None:
        """Plug a disk."""
        machine = self._running(name)
        self._check("disk")
        await self._delay()
        machine.disks[disk.name] = ObservedDisk(disk.name, disk.path, disk.cdrom)
        self._on_change(name)

    async def detach_disk(self, name: str, disk_name: str, *, timeout: float) -> None:
        """Unplug a disk; times out when the guest ignores unplugs."""
        machine = self._running(name)
        await self._unplug(timeout)
        machine.disks.pop(disk_name, None)
        self._on_change(name)

    async def attach_nic(self, name: str, nic: NicSpec) -> None:
        """Plug a NIC."""
        machine = self._running(name)
        self._check("nic")
        await self._delay()
        machine.nics[nic.name] = ObservedNic(nic.name, nic.mac, nic.link_up)
        self._on_change(name)

    async def detach_nic(self, name: str, nic_name: str, *, timeout: float) -> None:
        """Unplug a NIC; times out when the guest ignores unplugs."""
        machine = self._running(name)
        await self._unplug(timeout)
        machine.nics.pop(nic_name, None)
        self._on_change(name)

    async def _unplug(self, timeout: float) -> None:
        if not self.host.unplugs_acknowledged:
            await asyncio.sleep(timeout)
            raise UnplugTimeoutError(f"the guest did not release the device within {timeout:g}s")
        await self._delay()

    async def set_link(self, name: str, nic_name: str, *, up: bool) -> None:
        """Set a NIC's link state."""
        machine = self._running(name)
        self._check("link")
        nic = machine.nics.get(nic_name)
        if nic is None:
            raise HypervisorError(f"no NIC {nic_name} on {name}")
        await self._delay()
        machine.nics[nic_name] = dataclasses.replace(nic, link_up=up)
        self._on_change(name)

    async def observe(self, name: str) -> ObservedMachine:
        """What the simulated host has."""
        machine = self._machine(name)
        spec = machine.spec
        return ObservedMachine(
            name=name,
            state=machine.state,
            sockets=machine.sockets,
            cores=spec.cores,
            threads=spec.threads,
            vcpus=machine.sockets * spec.cores * spec.threads,
            memory_bytes=machine.memory_bytes,
            disks=tuple(machine.disks.values()),
            nics=tuple(machine.nics.values()),
            reason=machine.reason,
        )

    async def adopt(self) -> list[str]:
        """Every machine on the host survives a driver restart."""
        return list(self.host.machines)

    async def forget(self, name: str) -> None:
        """Drop a machine's record."""
        machine = self.host.machines.get(name)
        if machine is not None and machine.state in (MachineState.STARTING, MachineState.RUNNING):
            raise HypervisorError(f"machine {name} is still {machine.state.value}")
        self.host.machines.pop(name, None)

    async def close(self) -> None:
        """Stop delivering delayed completions (machines keep their state)."""
        for task in list(self._tasks):
            task.cancel()
