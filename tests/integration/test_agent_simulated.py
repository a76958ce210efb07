"""NodeAgent and Scheduler over a SimulatedHypervisor on a real SqliteStore.

VMIs are created in the store directly, as the VM controller creates them (Pending, the machine
finalizer, the boot status); every wait is on a store watch with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from vmplane.agent.agent import DEFAULT_IN_FLIGHT_GRACE, NodeAgent, VolumePreparer
from vmplane.agent.machine import machine_name
from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.api.resources import EVENTS, NODES, VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import (
    CPUTopology,
    VirtualMachineInstance,
    VirtualMachineInstanceSpec,
    VirtualMachineInstanceStatus,
    VMIPhase,
)
from vmplane.host.paths import HostPaths
from vmplane.hypervisor.base import Hypervisor, MachineSpec, MachineState, OnChange
from vmplane.hypervisor.simulated import HotplugKind, SimulatedHost, SimulatedHypervisor
from vmplane.rollout.observed import observed_from_status
from vmplane.scheduler.scheduler import Scheduler
from vmplane.store.base import JsonObject, NotFoundError, Store
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.builders import container_disk, disk, interface, network, pvc, vm_spec
from vmplane.testing.store_client import StoreObjectClient

NODE = "node01"
NS = "default"
DEADLINE = 5.0
VMIS = VIRTUAL_MACHINE_INSTANCES
Predicate = Callable[[JsonObject | None], bool]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Harness:
    """One store, one simulated host, a scheduler and the agent of ``node01``."""

    store: Store
    tmp: Path
    host: SimulatedHost = field(default_factory=SimulatedHost)
    drivers: list[SimulatedHypervisor] = field(default_factory=list)
    agent: NodeAgent | None = None
    scheduler: Scheduler | None = None

    def _driver(self, on_change: OnChange) -> Hypervisor:
        driver = SimulatedHypervisor(on_change=on_change, host=self.host, latency=0.01)
        self.drivers.append(driver)
        return driver

    @property
    def hv(self) -> SimulatedHypervisor:
        return self.drivers[-1]

    async def start_agent(
        self,
        preparer: VolumePreparer | None = None,
        in_flight_grace: float = DEFAULT_IN_FLIGHT_GRACE,
        **labels: str,
    ) -> NodeAgent:
        self.agent = NodeAgent(
            client=StoreObjectClient(self.store),
            hypervisor=self._driver,
            node_name=NODE,
            clock=utc_now,
            resolver=HostPaths(self.tmp),
            node_labels=labels,
            capacity={"cpu": "4", "memory": "8Gi"},
            unplug_timeout=0.3,
            preparer=preparer,
            in_flight_grace=in_flight_grace,
        )
        await self.agent.start()
        return self.agent

    async def create(self, name: str, spec: VirtualMachineInstanceSpec) -> JsonObject:
        status = VirtualMachineInstanceStatus(
            phase=VMIPhase.PENDING,
            current_cpu_topology=initial_cpu_topology(spec),
            memory=initial_memory_status(spec),
        )
        vmi = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {"kubevirt.io/vm": name},
                "finalizers": [MACHINE_FINALIZER],
            },
            "spec": spec.to_wire(),
            "status": status.to_wire(),
        }
        return await self.store.create(VMIS, vmi)

    async def edit(self, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the VMI spec as the VM controller does (a main-resource update)."""
        raw = await self.store.get(VMIS, NS, name)
        change(raw["spec"])
        await self.store.update(VMIS, raw)

    async def wait(
        self, name: str, predicate: Predicate, *, resource: str = VMIS, ns: str = NS
    ) -> JsonObject | None:
        """The object once ``predicate`` holds for it (None: gone), from a watch, within DEADLINE."""
        async with asyncio.timeout(DEADLINE):
            while True:
                since = await self.store.current_revision()
                try:
                    current: JsonObject | None = await self.store.get(resource, ns, name)
                except NotFoundError:
                    current = None
                if predicate(current):
                    return current
                events = self.store.watch(resource, ns or None, since=since)
                async with contextlib.aclosing(events):  # type: ignore[type-var]
                    async for event in events:
                        if event.object["metadata"]["name"] != name:
                            continue
                        current = None if event.type == "DELETED" else event.object
                        if predicate(current):
                            return current

    async def running(self, name: str, spec: VirtualMachineInstanceSpec) -> JsonObject:
        await self.create(name, spec)
        vmi = await self.wait(name, phase_is(VMIPhase.RUNNING))
        assert vmi is not None
        return vmi

    async def events(self, reason: str, *, at_least: int = 1) -> list[JsonObject]:
        """The events with ``reason`` once there are ``at_least`` (or all there are at DEADLINE): an
        event is its own write after the change it reports, so it may land a commit later."""
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while True:
            found = [e for e in (await self.store.list(EVENTS, NS)).items if e["reason"] == reason]
            if len(found) >= at_least or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = SqliteStore.open(tmp_path / "store.db")
    h = Harness(store=store, tmp=tmp_path)
    h.scheduler = Scheduler(client=StoreObjectClient(store), clock=utc_now)
    await h.scheduler.start()
    await h.start_agent()
    try:
        yield h
    finally:
        if h.agent is not None:
            await h.agent.stop()
        await h.scheduler.stop()
        await store.close()


# -- predicates -------------------------------------------------------------------------------------


def status_of(obj: JsonObject | None) -> VirtualMachineInstanceStatus:
    assert obj is not None
    return VirtualMachineInstance.model_validate(obj).status or VirtualMachineInstanceStatus()


def phase_is(phase: VMIPhase) -> Predicate:
    return lambda obj: obj is not None and status_of(obj).phase is phase


def condition(obj: JsonObject | None, type_: str) -> dict[str, Any] | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def has_condition(type_: str, status: str) -> Predicate:
    return lambda obj: (c := condition(obj, type_)) is not None and c["status"] == status


def lacks_condition(type_: str) -> Predicate:
    return lambda obj: obj is not None and condition(obj, type_) is None


def volume_phase(obj: JsonObject | None, name: str) -> str | None:
    volumes = ((obj or {}).get("status") or {}).get("volumeStatus") or []
    return next((v.get("phase") for v in volumes if v["name"] == name), None)


def link_state(obj: JsonObject | None, name: str) -> str | None:
    interfaces = ((obj or {}).get("status") or {}).get("interfaces") or []
    return next((i.get("linkState") for i in interfaces if i.get("name") == name), "gone")


def base_spec(**overrides: Any) -> VirtualMachineInstanceSpec:
    fields: dict[str, Any] = {
        "sockets": 1,
        "max_sockets": 4,
        "guest": "1Gi",
        "max_guest": "4Gi",
        "disks": [disk("root")],
        "volumes": [container_disk("root")],
        "interfaces": [interface("default", binding="masquerade")],
        "networks": [network("default")],
    }
    return vm_spec(**{**fields, **overrides})


# -- placement and lifecycle ------------------------------------------------------------------------


async def test_a_scheduled_vmi_runs_and_the_node_is_registered(harness: Harness) -> None:
    vmi = await harness.running("vm1", base_spec())
    status = status_of(vmi)
    assert status.node_name == NODE
    assert has_condition("Ready", "True")(vmi)
    assert status.current_cpu_topology == CPUTopology(sockets=1, cores=1, threads=1)
    assert [(i.name, i.link_state) for i in status.interfaces or ()] == [("default", "up")]
    node = await harness.store.get(NODES, "", NODE)
    assert node["metadata"]["labels"]["kubevirt.io/schedulable"] == "true"
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    assert await harness.events("Started")
    assert harness.host.machines[machine_name(NS, "vm1")].state is MachineState.RUNNING


async def test_an_unschedulable_vmi_stays_pending_until_a_node_fits(harness: Harness) -> None:
    await harness.create("picky", base_spec(node_selector={"disktype": "ssd"}))
    vmi = await harness.wait("picky", has_condition("PodScheduled", "False"))
    scheduled = condition(vmi, "PodScheduled")
    assert scheduled is not None
    assert scheduled["reason"] == "Unschedulable"
    assert (
        scheduled["message"]
        == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
    assert (status_of(vmi).phase, status_of(vmi).node_name) == (VMIPhase.PENDING, None)
    assert await harness.events("FailedScheduling")
    # A Node change re-evaluates it: the restarted agent registers the label.
    assert harness.agent is not None
    await harness.agent.stop()
    await harness.start_agent(disktype="ssd")
    vmi = await harness.wait("picky", phase_is(VMIPhase.RUNNING))
    assert has_condition("PodScheduled", "True")(vmi)
    assert await harness.events("Scheduled")


async def test_a_node_holds_the_guests_its_memory_allows_and_takes_more_when_one_goes(
    harness: Harness,
) -> None:
    # 8Gi capacity, 7.75Gi allocatable: two 3Gi guests (3Gi + 38Mi each with the overhead) fit.
    for name in ("big1", "big2"):
        await harness.running(name, base_spec(guest="3Gi", max_guest="6Gi"))
    await harness.create("big3", base_spec(guest="3Gi", max_guest="6Gi"))
    vmi = await harness.wait("big3", has_condition("PodScheduled", "False"))
    scheduled = condition(vmi, "PodScheduled")
    assert scheduled is not None
    assert scheduled["message"] == "0/1 nodes are available: 1 Insufficient memory."
    await harness.store.delete(VMIS, NS, "big1")
    vmi = await harness.wait("big3", phase_is(VMIPhase.RUNNING))
    assert status_of(vmi).node_name == NODE


async def test_deleting_an_unscheduled_vmi_releases_the_finalizer(harness: Harness) -> None:
    await harness.create("nowhere", base_spec(node_selector={"disktype": "nvme"}))
    await harness.wait("nowhere", has_condition("PodScheduled", "False"))
    await harness.store.delete(VMIS, NS, "nowhere")
    assert await harness.wait("nowhere", lambda obj: obj is None) is None


async def test_deletion_stops_the_machine_and_removes_the_finalizer(harness: Harness) -> None:
    await harness.running("doomed", base_spec(termination_grace_period_seconds=1))
    await harness.store.delete(VMIS, NS, "doomed")
    assert await harness.wait("doomed", lambda obj: obj is None) is None
    assert machine_name(NS, "doomed") not in harness.host.machines
    assert await harness.events("Stopped")


async def test_a_killed_machine_makes_the_vmi_fail_within_two_seconds(harness: Harness) -> None:
    await harness.running("fragile", base_spec())
    started = asyncio.get_running_loop().time()
    harness.hv.kill(machine_name(NS, "fragile"))
    vmi = await harness.wait("fragile", phase_is(VMIPhase.FAILED))
    assert asyncio.get_running_loop().time() - started < 2.0
    assert "SIGKILL" in (status_of(vmi).reason or "")
    failed = await harness.events("Failed")
    assert [e["type"] for e in failed] == ["Warning"]


async def test_a_guest_that_powers_off_succeeds(harness: Harness) -> None:
    await harness.running("short", base_spec())
    harness.hv.power_off(machine_name(NS, "short"))
    vmi = await harness.wait("short", phase_is(VMIPhase.SUCCEEDED))
    assert status_of(vmi).reason == "guest shut down"


async def test_a_spec_the_host_cannot_run_fails_the_vmi(harness: Harness) -> None:
    await harness.create("orphan-disk", base_spec(volumes=[]))
    vmi = await harness.wait("orphan-disk", phase_is(VMIPhase.FAILED))
    assert "disks[name=root]: no volume" in (status_of(vmi).reason or "")


async def test_a_new_agent_adopts_running_machines_without_restarting_them(harness: Harness) -> None:
    await harness.running("keeper", base_spec())
    machine = machine_name(NS, "keeper")
    boot = harness.hv.boot_of(machine)
    assert harness.agent is not None
    await harness.agent.stop()
    await harness.start_agent()
    # The new agent reports and hotplugs through its own driver; the guest is the same boot.
    await harness.edit("keeper", lambda spec: spec["domain"]["cpu"].update(sockets=2))
    vmi = await harness.wait("keeper", lambda o: status_of(o).current_cpu_topology.sockets == 2)  # type: ignore[union-attr]
    assert status_of(vmi).phase is VMIPhase.RUNNING
    assert harness.hv.boot_of(machine) == boot
    assert len(harness.host.machines) == 1


# -- hotplug ----------------------------------------------------------------------------------------


def _grow(spec: dict[str, Any]) -> None:
    spec["domain"]["cpu"]["sockets"] = 3
    spec["domain"]["memory"]["guest"] = "2Gi"


async def _grown_watching_in_flight(harness: Harness, name: str) -> tuple[JsonObject | None, list[str]]:
    """Grow ``name`` to 3 sockets and 2Gi; the VMI once it shows both done, and the hotplug
    conditions it showed True on the way."""
    seen_in_flight: list[str] = []

    def watching(obj: JsonObject | None) -> bool:
        seen_in_flight.extend(
            t for t in ("HotVCPUChange", "HotMemoryChange") if has_condition(t, "True")(obj)
        )
        status = status_of(obj)
        topology, memory = status.current_cpu_topology, status.memory
        return bool(
            topology is not None
            and topology.sockets == 3
            and memory is not None
            and str(memory.guest_current) == "2Gi"
            and str(memory.guest_requested) == "2Gi"
            and condition(obj, "HotVCPUChange") is None
            and condition(obj, "HotMemoryChange") is None
        )

    await harness.edit(name, _grow)
    return await harness.wait(name, watching), seen_in_flight


async def test_cpu_and_memory_changes_reach_the_guest_and_the_status(harness: Harness) -> None:
    await harness.running("grow", base_spec())
    vmi, _ = await _grown_watching_in_flight(harness, "grow")
    observed = await harness.hv.observe(machine_name(NS, "grow"))
    assert (observed.sockets, observed.memory_bytes) == (3, 2 << 30)
    assert str(status_of(vmi).memory.guest_at_boot) == "1Gi"  # type: ignore[union-attr]
    applied = sorted(e["message"].split(":")[0] for e in await harness.events("HotplugApplied", at_least=2))
    assert applied == ["domain.cpu.sockets", "domain.memory.guest"]


async def test_hotplugs_done_within_the_grace_are_reported_once_done(harness: Harness) -> None:
    await harness.running("quick", base_spec())
    _, seen_in_flight = await _grown_watching_in_flight(harness, "quick")
    assert seen_in_flight == []


async def test_hotplugs_that_outlast_the_grace_are_reported_in_flight_first(harness: Harness) -> None:
    assert harness.agent is not None
    await harness.agent.stop()
    await harness.start_agent(in_flight_grace=0.0)
    await harness.running("slow", base_spec())
    _, seen_in_flight = await _grown_watching_in_flight(harness, "slow")
    assert set(seen_in_flight) == {"HotVCPUChange", "HotMemoryChange"}


async def test_a_hotpluggable_disk_is_attached_and_detached(harness: Harness) -> None:
    await harness.running("disks", base_spec())

    def add(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"]["disks"].append(disk("data").to_wire())
        spec["volumes"].append(pvc("data", hotpluggable=True).to_wire())

    await harness.edit("disks", add)
    await harness.wait("disks", lambda obj: volume_phase(obj, "data") == "Ready")
    observed = await harness.hv.observe(machine_name(NS, "disks"))
    data = next(d for d in observed.disks if d.name == "data")
    assert data.path == str(harness.tmp / "volumes" / NS / "claims" / "data-pvc.qcow2")

    def remove(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"]["disks"] = [
            d for d in spec["domain"]["devices"]["disks"] if d["name"] != "data"
        ]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "data"]

    await harness.edit("disks", remove)
    await harness.wait("disks", lambda obj: obj is not None and volume_phase(obj, "data") is None)
    observed = await harness.hv.observe(machine_name(NS, "disks"))
    assert [d.name for d in observed.disks] == ["root"]


@dataclass
class RecordingPreparer:
    """The agent's volume preparer as far as this test needs it: it records what it was asked to
    prepare (the simulated host has no files to make)."""

    prepared: list[tuple[str, ...]] = field(default_factory=list)

    async def prepare(self, vmi: VirtualMachineInstance, spec: MachineSpec) -> None:
        self.prepared.append(tuple(d.name for d in spec.disks))

    async def release(self, vmi: VirtualMachineInstance) -> None:
        del vmi


async def test_a_hotplugged_volume_is_attached_to_node_once_prepared_then_ready(harness: Harness) -> None:
    assert harness.agent is not None
    await harness.agent.stop()
    preparer = RecordingPreparer()
    await harness.start_agent(preparer)
    await harness.running("staged", base_spec())

    def add(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"]["disks"].append(disk("data", bus="scsi").to_wire())
        spec["volumes"].append(pvc("data", hotpluggable=True).to_wire())

    since = await harness.store.current_revision()
    await harness.edit("staged", add)
    # Every revision since the edit comes through the watch, so the short-lived phase is seen.
    phases: list[str | None] = []
    async with asyncio.timeout(DEADLINE):
        events = harness.store.watch(VMIS, NS, since=since)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if event.object["metadata"]["name"] == "staged":
                    phase = volume_phase(event.object, "data")
                    if phase != (phases[-1] if phases else None):
                        phases.append(phase)
                    if phase == "Ready":
                        break
    assert phases == ["Pending", "AttachedToNode", "Ready"]
    assert ("root", "data") in preparer.prepared


async def test_a_nic_is_hotplugged_relinked_and_unplugged(harness: Harness) -> None:
    await harness.running("nics", base_spec())

    def add(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"]["interfaces"].append(interface("blue").to_wire())
        spec["networks"].append(network("blue", nad="blue-net").to_wire())

    def set_state(state: str) -> Callable[[dict[str, Any]], None]:
        def change(spec: dict[str, Any]) -> None:
            for iface in spec["domain"]["devices"]["interfaces"]:
                if iface["name"] == "blue":
                    iface["state"] = state

        return change

    await harness.edit("nics", add)
    await harness.wait("nics", lambda obj: link_state(obj, "blue") == "up")
    await harness.edit("nics", set_state("down"))
    await harness.wait("nics", lambda obj: link_state(obj, "blue") == "down")
    observed = await harness.hv.observe(machine_name(NS, "nics"))
    assert [(n.name, n.link_up) for n in observed.nics] == [("blue", False), ("default", True)]
    await harness.edit("nics", set_state("absent"))
    await harness.wait("nics", lambda obj: link_state(obj, "blue") == "gone")
    observed = await harness.hv.observe(machine_name(NS, "nics"))
    assert [n.name for n in observed.nics] == ["default"]


# -- failures ---------------------------------------------------------------------------------------


async def test_refused_hotplugs_are_reported_as_the_planner_reads_them(harness: Harness) -> None:
    await harness.running("refused", base_spec())
    kinds: tuple[HotplugKind, ...] = ("cpu", "memory", "disk", "nic")
    for kind in kinds:
        harness.hv.refuse_hotplug(kind)

    def everything(spec: dict[str, Any]) -> None:
        spec["domain"]["cpu"]["sockets"] = 2
        spec["domain"]["memory"]["guest"] = "2Gi"
        spec["domain"]["devices"]["disks"].append(disk("data").to_wire())
        spec["volumes"].append(pvc("data", hotpluggable=True).to_wire())
        spec["domain"]["devices"]["interfaces"].append(interface("blue").to_wire())
        spec["networks"].append(network("blue", nad="blue-net").to_wire())

    def all_failed(obj: JsonObject | None) -> bool:
        return (
            has_condition("HotVCPUChange", "False")(obj)
            and has_condition("HotMemoryChange", "False")(obj)
            and has_condition("HotInterfaceChange", "False")(obj)
            and volume_phase(obj, "data") == "Failed"
        )

    await harness.edit("refused", everything)
    vmi = await harness.wait("refused", all_failed)
    assert vmi is not None
    status = status_of(vmi)
    assert status.current_cpu_topology == CPUTopology(sockets=1, cores=1, threads=1)
    assert status.memory is not None
    assert str(status.memory.guest_current) == "1Gi"
    assert (condition(vmi, "HotInterfaceChange") or {})["reason"] == "blue"
    assert "refused" in (condition(vmi, "HotVCPUChange") or {})["message"]
    failed = observed_from_status(status, vmi["spec"]).failed
    assert set(failed) == {
        "domain.cpu.sockets",
        "domain.memory.guest",
        "volumes[name=data]",
        "domain.devices.disks[name=data]",
        "domain.devices.interfaces[name=blue]",
    }
    assert failed["domain.cpu.sockets"].observed == 1
    # Recorded once, typed: one entry per failed path, as both the agent and the planner read it.
    assert [f["path"] for f in vmi["status"]["hotplugFailures"]] == [
        "domain.cpu.sockets",
        "domain.devices.interfaces[name=blue]",
        "domain.memory.guest",
        "volumes[name=data]",
    ]
    assert len(await harness.events("HotplugFailed", at_least=4)) == 4

    # Never retried for the same target: allow CPU hotplug again, make the agent act on another
    # change, and the failed CPU change is still neither applied nor retried.
    harness.hv.refuse_hotplug("cpu", refuse=False)
    harness.hv.refuse_hotplug("memory", refuse=False)
    await harness.edit("refused", lambda spec: spec["domain"]["memory"].update(guest="1Gi"))
    vmi = await harness.wait("refused", lacks_condition("HotMemoryChange"))
    assert has_condition("HotVCPUChange", "False")(vmi)
    assert (await harness.hv.observe(machine_name(NS, "refused"))).sockets == 1
    # Once the spec equals what the guest has again (the planner's revert), the failure clears.
    await harness.edit("refused", lambda spec: spec["domain"]["cpu"].update(sockets=1))
    await harness.wait("refused", lacks_condition("HotVCPUChange"))


async def test_an_unplug_the_guest_never_acknowledges_fails_after_the_deadline(harness: Harness) -> None:
    spec = base_spec(
        disks=[disk("root"), disk("data")], volumes=[container_disk("root"), pvc("data", hotpluggable=True)]
    )
    await harness.running("stuck", spec)
    harness.hv.never_ack_unplug()

    def remove(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"]["disks"] = [
            d for d in spec["domain"]["devices"]["disks"] if d["name"] != "data"
        ]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "data"]

    await harness.edit("stuck", remove)
    vmi = await harness.wait("stuck", lambda obj: volume_phase(obj, "data") == "Failed")
    volume = next(v for v in status_of(vmi).volume_status or () if v.name == "data")
    assert "did not release" in (volume.message or "")
    machine = machine_name(NS, "stuck")
    observed = await harness.hv.observe(machine)
    assert [d.name for d in observed.disks] == ["data", "root"]
    assert observed.pending_unplugs == ("disk-data",)
    # The guest lets go at last: the disk is gone and the failure with it.
    harness.hv.ack_unplugs(machine)
    await harness.wait("stuck", lambda obj: obj is not None and volume_phase(obj, "data") is None)
    assert len(await harness.events("HotplugFailed")) == 1


@pytest.mark.parametrize("phase", [VMIPhase.FAILED, VMIPhase.SUCCEEDED])
async def test_a_finished_vmi_is_released_once_deleted(harness: Harness, phase: VMIPhase) -> None:
    await harness.running("done", base_spec())
    machine = machine_name(NS, "done")
    if phase is VMIPhase.FAILED:
        harness.hv.kill(machine)
    else:
        harness.hv.power_off(machine)
    await harness.wait("done", phase_is(phase))
    await harness.store.delete(VMIS, NS, "done")
    assert await harness.wait("done", lambda obj: obj is None) is None
    assert machine not in harness.host.machines
