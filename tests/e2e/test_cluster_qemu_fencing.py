"""Fencing a real QEMU guest after ``kill -9`` of its agent (``vmplane agent --hypervisor qemu``).

QEMU outlives its agent on purpose (a restarted agent adopts it), so the agent's own fence cannot
stop it once the agent is dead: the agent's fence watchdog, a detached process fed a heartbeat after
every Lease renewal, kills the QEMU its machine records name once the last renewal is the fence
timeout old. Here: an agent restarted (SIGTERM, start) replaces the watchdog and keeps its guest past
the fence timeout; after ``kill -9`` the guest still runs a second later and is gone within the fence
timeout and a few seconds, and the watchdog exits.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config
from plane_support import GUEST_IMAGE, SCRATCH_IMAGE, Cluster, guest_cmdline, install_images, reachable_dir

from vmplane.cli.dev_cluster import LocalCluster
from vmplane.hypervisor.qemu.process import proc_starttime
from vmplane.hypervisor.qemu.records import MachineRecord, read_record
from vmplane.hypervisor.qemu.watchdog import WATCHDOG_FILE

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.timeout(300)]
# Longer than an agent restart takes on a loaded machine (stop, a new interpreter, the first renewal).
FENCE_TIMEOUT = 12.0
GRACE = 16.0
# The watchdog polls twice a second; a loaded machine (2 shared cores) may add a little.
LATE = 4.0
BOOT = 240.0


def vm() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        f"""
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: fenced
spec:
  runStrategy: Always
  template:
    spec:
      terminationGracePeriodSeconds: 0
      nodeSelector: {{kubernetes.io/hostname: node02}}
      domain:
        memory: {{guest: 256Mi}}
        firmware:
          kernelBoot:
            kernelArgs: "{guest_cmdline()}"
            container: {{image: {GUEST_IMAGE}, kernelPath: /vmlinuz, initrdPath: /initrd.img}}
        devices:
          disks:
          - {{name: scratch, disk: {{bus: virtio}}}}
      volumes:
      - {{name: scratch, containerDisk: {{image: "{SCRATCH_IMAGE}"}}}}
"""
    )
    return manifest


@pytest.fixture(scope="module")
def guests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    made = reachable_dir("vmplane-fencing-guests-")
    install_images(made / "node02")
    yield made
    # The watchdog's log outlives the guest directory, for a failure's post-mortem.
    with contextlib.suppress(OSError):
        shutil.copy(made / "node02" / "fence-watchdog.log", tmp_path_factory.mktemp("watchdog-log"))
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, guests: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        root=tmp_path_factory.mktemp("qemu-fencing"),
        hypervisor="qemu",
        guest_root=guests,
        grace_period=GRACE,
        fence_timeout=FENCE_TIMEOUT,
    )
    try:
        cluster.start(controllers=1, nodes=("node02",))
        yield cluster
    finally:
        cluster.stop_all()


def alive(pid: int, starttime: int | None) -> bool:
    return starttime is not None and proc_starttime(pid) == starttime


@pytest.fixture(scope="module")
def qemu(local: LocalCluster, guests: Path) -> MachineRecord:
    """The record of the VM's QEMU, once its VMI runs."""
    assert local.admin_kubeconfig is not None
    api = config.new_client_from_config(config_file=str(local.admin_kubeconfig))
    api.set_default_header("Connection", "close")
    cluster = Cluster(api)
    try:
        cluster.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm()
        )
        running = cluster.wait(
            "virtualmachineinstances",
            "fenced",
            lambda o: ((o or {}).get("status") or {}).get("phase") == "Running",
            BOOT,
        )
        assert running is not None
    finally:
        api.close()
    (path,) = (guests / "node02" / "machines").glob("*/machine.json")
    record = read_record(path)
    assert alive(record.pid, record.starttime)
    return record


def watchdog_of(guests: Path) -> tuple[int, int]:
    known = json.loads((guests / "node02" / WATCHDOG_FILE).read_text())
    return int(known["pid"]), int(known["starttime"])


def test_a_restarted_agent_replaces_the_watchdog_and_keeps_its_guest(
    local: LocalCluster, guests: Path, qemu: MachineRecord
) -> None:
    old = watchdog_of(guests)
    local.stop("node02")
    local.start_agent("node02", labels="vmplane.io/node=node02")
    deadline = time.monotonic() + 30
    while watchdog_of(guests) == old and time.monotonic() < deadline:
        time.sleep(0.2)
    assert watchdog_of(guests) != old, "the restarted agent started no watchdog of its own"
    assert not alive(*old), "the old watchdog still runs beside the new one"
    # Longer than the fence timeout: the new agent's renewals feed the new watchdog.
    time.sleep(FENCE_TIMEOUT + 2)
    assert alive(qemu.pid, qemu.starttime), "the guest was fenced although its agent came back"
    assert alive(*watchdog_of(guests))


def test_a_qemu_guest_is_killed_by_the_fence_watchdog_after_its_agent_is_killed(
    local: LocalCluster, guests: Path, qemu: MachineRecord
) -> None:
    watchdog = watchdog_of(guests)
    assert alive(qemu.pid, qemu.starttime)

    local.kill("node02")
    killed = time.monotonic()
    time.sleep(1.0)
    assert alive(qemu.pid, qemu.starttime), "QEMU died with its agent: nothing left for the watchdog to show"
    while alive(qemu.pid, qemu.starttime) and time.monotonic() - killed < FENCE_TIMEOUT + LATE:
        time.sleep(0.1)
    gone_after = time.monotonic() - killed

    assert not alive(qemu.pid, qemu.starttime), f"QEMU still runs {gone_after:.1f} s after the kill"
    log = (guests / "node02" / "fence-watchdog.log").read_text()
    assert f"killed QEMU [{qemu.pid}]" in log
    deadline = time.monotonic() + 5
    while alive(*watchdog) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(*watchdog), "the watchdog did not exit after fencing"
