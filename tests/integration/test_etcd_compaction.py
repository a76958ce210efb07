"""Compaction coordinated across stores: two EtcdStores over one etcd compact once per interval
between them (the compact key's compare-and-swap), to a revision an interval old."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from etcd_support import EtcdCluster

from vmplane.store.base import ExpiredError
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig

pytestmark = [pytest.mark.integration, pytest.mark.requires("etcd"), pytest.mark.timeout(60)]
VMS = "virtualmachines.kubevirt.io"
INTERVAL = 0.5


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    one = EtcdCluster(in_memory=True).start()
    try:
        yield one
    finally:
        one.stop()


def compact_key_version(cluster: EtcdCluster) -> int:
    kvs = json.loads(cluster.etcdctl("get", "compact_rev_key", "-w", "json")).get("kvs", [])
    return int(kvs[0]["version"]) if kvs else 0


async def test_two_stores_compact_once_per_interval_between_them(cluster: EtcdCluster) -> None:
    stores = [
        await EtcdStore.open(EtcdConfig(cluster.endpoints), compaction_interval=INTERVAL) for _ in range(2)
    ]
    try:
        first = await stores[0].current_revision()
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < 8 * INTERVAL:
            await stores[index % 2].create(VMS, {"metadata": {"name": f"vm-{index}", "namespace": "default"}})
            index += 1
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        compactions = compact_key_version(cluster)
        with pytest.raises(ExpiredError):
            await anext(stores[1].watch(VMS, since=first))
    finally:
        for store in stores:
            await store.close()
    intervals = elapsed / INTERVAL
    # The first interval only notes the revision; afterwards one of the two compacts each interval.
    assert 1 <= compactions <= intervals + 1, (compactions, intervals)
