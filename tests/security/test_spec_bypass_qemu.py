"""With real QEMU: VMIs written straight into the store, past admission, get no file created or opened.

The node agent runs as ``vmplane serve`` runs it (SQLite store, scheduler, ``QemuHypervisor`` under
TCG, ``QemuVolumePreparer`` with real ``qemu-img``) on a tmp data directory. A well-formed VMI boots
first, so the harness demonstrably starts QEMU; then each crafted VMI must fail with a reason naming
its field, while no QEMU is started for it, its target is never created, and another namespace's
claim is never opened (its bytes and mtime stay as they were).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from plane_support import reachable_dir
from spec_checks_support import NS, files_under, vmi_spec

from vmplane.agent.agent import NodeAgent
from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.ownership import MACHINE_FINALIZER
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.vmi import VirtualMachineInstanceSpec, VirtualMachineInstanceStatus, VMIPhase
from vmplane.host.paths import HostPaths
from vmplane.host.volumes import QemuVolumePreparer
from vmplane.hypervisor.base import Hypervisor, OnChange
from vmplane.hypervisor.guestfs import guest_user
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.scheduler.scheduler import Scheduler
from vmplane.store.base import JsonObject, NotFoundError
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.store_client import StoreObjectClient

GUEST = Path(__file__).resolve().parents[2] / "guest" / "out"
GUEST_IMAGE = "vmplane/test-guest:latest"
DEADLINE = 60.0

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Node:
    """One data directory, store, scheduler and node agent on real QEMU."""

    tmp: Path
    store: SqliteStore
    agent: NodeAgent
    scheduler: Scheduler

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    async def create(self, name: str, spec: dict[str, Any]) -> None:
        """Write the VMI as the VM controller would, with no admission in between."""
        typed = VirtualMachineInstanceSpec.model_validate(spec)
        status = VirtualMachineInstanceStatus(
            phase=VMIPhase.PENDING,
            current_cpu_topology=initial_cpu_topology(typed),
            memory=initial_memory_status(typed),
        )
        vmi = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS, "finalizers": [MACHINE_FINALIZER]},
            "spec": spec,
            "status": status.to_wire(),
        }
        await self.store.create(VIRTUAL_MACHINE_INSTANCES, vmi)

    async def settled(self, name: str) -> JsonObject:
        """The VMI once it is Running or Failed (polling the store, within DEADLINE)."""
        async with asyncio.timeout(DEADLINE):
            while True:
                with contextlib.suppress(NotFoundError):
                    vmi = await self.store.get(VIRTUAL_MACHINE_INSTANCES, NS, name)
                    if (vmi.get("status") or {}).get("phase") in ("Running", "Failed"):
                        return vmi
                await asyncio.sleep(0.05)

    def run_dirs(self) -> set[str]:
        machines = self.tmp / "machines"
        return {p.name for p in machines.iterdir()} if machines.exists() else set()

    def kill_guests(self) -> None:
        for pidfile in (self.tmp / "machines").glob("*/qemu/qemu.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    # Guests' files where QEMU's user can reach them (pytest's own directories are closed to it).
    tmp = reachable_dir("vmplane-bypass-")
    kernel = tmp / "data" / "images" / "vmplane_test-guest_latest"
    kernel.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(GUEST / name, kernel / name)
    store = SqliteStore.open(tmp_path_factory.mktemp("bypass") / "store.db")
    paths = HostPaths(tmp / "data", host_disk_dirs=(tmp / "data" / "hostdisks",))

    def qemu(on_change: OnChange) -> Hypervisor:
        return QemuHypervisor(base_dir=tmp / "machines", accel="tcg", on_change=on_change)

    agent = NodeAgent(
        client=StoreObjectClient(store),
        hypervisor=qemu,
        node_name="node01",
        clock=lambda: datetime.now(UTC),
        paths=paths,
        preparer=QemuVolumePreparer(
            paths=paths, allowed_host_dirs=[tmp / "data" / "hostdisks"], user=guest_user(euid=os.geteuid())
        ),
        capacity={"cpu": "4", "memory": "8Gi"},
    )
    scheduler = Scheduler(client=StoreObjectClient(store), clock=lambda: datetime.now(UTC))
    await scheduler.start()
    await agent.start()
    running = Node(tmp=tmp, store=store, agent=agent, scheduler=scheduler)
    try:
        yield running
    finally:
        await agent.stop()
        await scheduler.stop()
        running.kill_guests()
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def reason(vmi: JsonObject) -> str:
    status = vmi.get("status") or {}
    texts = [status.get("reason") or "", *(c.get("message") or "" for c in status.get("conditions") or [])]
    return " ".join(texts)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_well_formed_vmi_boots_on_qemu(node: Node) -> None:
    kernel = {"image": GUEST_IMAGE, "kernelPath": "/vmlinuz", "initrdPath": "/initrd.img"}
    cmdline = (GUEST / "cmdline").read_text().strip()
    spec = vmi_spec(
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        domain={
            "memory": {"guest": "256Mi"},
            "firmware": {"kernelBoot": {"kernelArgs": cmdline, "container": kernel}},
        },
    )
    await node.create("good", spec)
    vmi = await node.settled("good")
    assert vmi["status"]["phase"] == "Running", reason(vmi)
    assert (node.data / "volumes" / NS / "claims" / "data.qcow2").is_file()
    assert node.run_dirs() == {f"{NS}_good"}


async def test_claim_name_climbing_out_of_the_data_directory_fails_the_vmi_and_creates_nothing(
    node: Node,
) -> None:
    target = node.tmp / "x"
    target.mkdir()
    climb = os.path.relpath(target / "pwn", node.data / "volumes" / NS / "claims")
    await node.create("pwn", vmi_spec(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": climb}}]))
    vmi = await node.settled("pwn")
    assert vmi["status"]["phase"] == "Failed"
    assert "persistentVolumeClaim.claimName" in reason(vmi)
    assert files_under(target) == set()
    assert f"{NS}_pwn" not in node.run_dirs()


async def test_claim_linked_to_another_namespaces_image_is_never_opened(node: Node) -> None:
    secret = node.data / "volumes" / "other" / "claims" / "secret.qcow2"
    secret.parent.mkdir(parents=True)
    command = ["qemu-img", "create", "-q", "-f", "qcow2", str(secret), "1M"]
    await asyncio.to_thread(subprocess.run, command, check=True, timeout=30)
    before = (sha256(secret), secret.stat().st_mtime_ns)
    (node.data / "volumes" / NS / "claims" / "stolen.qcow2").symlink_to(secret)
    await node.create(
        "steal", vmi_spec(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "stolen"}}])
    )
    vmi = await node.settled("steal")
    assert vmi["status"]["phase"] == "Failed"
    assert "outside" in reason(vmi)
    assert f"{NS}_steal" not in node.run_dirs()
    assert (sha256(secret), secret.stat().st_mtime_ns) == before


async def test_machine_type_with_a_firmware_option_never_reaches_qemu(node: Node) -> None:
    await node.create("firmware", vmi_spec(domain={"machine": {"type": "q35,firmware=/etc/shadow"}}))
    vmi = await node.settled("firmware")
    assert vmi["status"]["phase"] == "Failed"
    assert "spec.domain.machine.type" in reason(vmi)
    assert f"{NS}_firmware" not in node.run_dirs()
    assert not (node.data / "volumes" / NS / "vmis" / "firmware").exists()
