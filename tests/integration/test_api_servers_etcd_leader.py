"""kill -9 of the etcd leader during a burst of writes through two API servers over a 3-member etcd.

Two writers (one per API server) create VMs as fast as they are acknowledged; the leader is killed
mid-burst. Writes through each API server must resume within 15 s, every acknowledged create must
be in the final list, and a watch on each API server opened before the burst must deliver every
create of the final list exactly once, in resourceVersion order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from apiservers_support import (
    VMS,
    ApiServerProcess,
    RawWatch,
    kubectl,
    pointed_at,
    start_apiserver,
    stop_apiserver,
)
from etcd_support import EtcdCluster
from test_api_support import CPU_HOTPLUG_VM

from vmplane.api.resources import VIRTUAL_MACHINES
from vmplane.client.base import UnavailableError
from vmplane.client.config import https_client, read_kubeconfig
from vmplane.store.base import StoreError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires("kubectl", "etcd"),
    pytest.mark.timeout(180),
]
log = logging.getLogger(__name__)
BURST = 12.0  # seconds of writes; the leader is killed a third of the way in
RESUME = 15.0


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EtcdCluster, ApiServerProcess, ApiServerProcess]]:
    etcd = EtcdCluster(size=3, in_memory=True).start()
    root = tmp_path_factory.mktemp("apiservers")
    started: list[ApiServerProcess] = []
    try:
        started.append(start_apiserver(root, "a", etcd.url()))
        started.append(start_apiserver(root, "b", etcd.url()))
        yield etcd, started[0], started[1]
    finally:
        for server in started:
            stop_apiserver(server)
        etcd.stop()


async def write_burst(kubeconfig: Path, prefix: str, killed: asyncio.Event) -> tuple[set[str], float]:
    """Create VMs for BURST seconds; the names acknowledged and the longest time between two
    acknowledgements around the kill (a failed or slow write both count)."""
    client = https_client(read_kubeconfig(kubeconfig))
    acknowledged: set[str] = set()
    stall = 0.0
    last_ack = time.monotonic()
    deadline = last_ack + BURST
    n = 0
    try:
        while time.monotonic() < deadline and time.monotonic() - last_ack < 2 * RESUME:
            vm = yaml.safe_load(CPU_HOTPLUG_VM.format(name=f"{prefix}-{n}"))
            vm["metadata"]["namespace"] = "default"
            n += 1
            try:
                await asyncio.wait_for(client.create(VIRTUAL_MACHINES, vm), 20)
            except (UnavailableError, StoreError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            acknowledged.add(vm["metadata"]["name"])
            now = time.monotonic()
            if killed.is_set():
                stall = max(stall, now - last_ack)
            last_ack = now
    finally:
        await client.close()
    return acknowledged, stall


def test_writes_resume_and_nothing_acknowledged_is_lost_when_the_etcd_leader_is_killed(
    setup: tuple[EtcdCluster, ApiServerProcess, ApiServerProcess],
    tmp_path: Path,
) -> None:
    etcd, a, b = setup
    a_at_b = pointed_at(a.kubeconfig, b, tmp_path / "a-at-b")
    since = json.loads(kubectl(a.kubeconfig, "get", "--raw", VMS).stdout)["metadata"]["resourceVersion"]
    watches = [RawWatch(a.kubeconfig, a, since, idle=25), RawWatch(a.kubeconfig, b, since, idle=25)]
    leader = etcd.leader()

    async def burst() -> list[tuple[set[str], float]]:
        killed = asyncio.Event()

        async def kill_later() -> None:
            await asyncio.sleep(BURST / 3)
            await asyncio.to_thread(etcd.kill, leader)
            killed.set()

        killer = asyncio.create_task(kill_later())
        results = await asyncio.gather(
            write_burst(a.kubeconfig, "via-a", killed), write_burst(a_at_b, "via-b", killed)
        )
        await killer
        return list(results)

    results = asyncio.run(burst())
    acknowledged = set().union(*(names for names, _ in results))
    assert all(len(names) > 0 for names, _ in results)
    log.info(
        "acknowledged %d creates; longest stall per API server: %s s",
        len(acknowledged),
        [round(stall, 2) for _, stall in results],
    )
    for _, stall in results:
        assert stall <= RESUME, f"writes stalled {stall:.1f} s after the leader was killed"
    final = json.loads(kubectl(a_at_b, "get", "--raw", VMS).stdout)["items"]
    listed = {item["metadata"]["name"]: int(item["metadata"]["resourceVersion"]) for item in final}
    assert acknowledged - set(listed) == set(), "acknowledged creates lost"
    expected = [("ADDED", name, str(rv)) for name, rv in sorted(listed.items(), key=lambda kv: kv[1])]
    for watch in watches:
        assert watch.finish() == expected
