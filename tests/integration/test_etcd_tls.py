"""EtcdStore over client TLS (``--etcd-cafile/--etcd-certfile/--etcd-keyfile``) to a real etcd that
requires client certificates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_support import EtcdCluster, EtcdTls, make_tls

from vmplane.app import store_opener
from vmplane.store.base import StoreError
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig

pytestmark = [pytest.mark.integration, pytest.mark.requires("etcd"), pytest.mark.timeout(60)]
VMS = "virtualmachines.kubevirt.io"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EtcdTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def cluster(tls: EtcdTls) -> Iterator[EtcdCluster]:
    secured = EtcdCluster(in_memory=True, tls=tls).start()
    try:
        yield secured
    finally:
        secured.stop()


async def test_the_store_flags_reach_etcd_over_tls_with_a_client_certificate(
    cluster: EtcdCluster, tls: EtcdTls, tmp_path: Path
) -> None:
    opener = store_opener(
        cluster.url(), etcd_cafile=tls.ca, etcd_certfile=tls.client_cert, etcd_keyfile=tls.client_key
    )
    assert opener is not None
    store = await opener(tmp_path)
    try:
        created = await store.create(VMS, {"metadata": {"name": "a", "namespace": "default"}})
        events = store.watch(VMS, since=int(created["metadata"]["resourceVersion"]) - 1)
        assert (await anext(events)).object == await store.get(VMS, "default", "a") == created
    finally:
        await store.close()


async def test_without_a_client_certificate_etcd_refuses_the_store(
    cluster: EtcdCluster, tls: EtcdTls
) -> None:
    config = EtcdConfig(cluster.endpoints, cafile=tls.ca, deadline=2.0)
    with pytest.raises(StoreError):
        await EtcdStore.open(config, compaction_interval=None)


def test_tls_files_without_an_etcd_store_are_refused(tls: EtcdTls) -> None:
    with pytest.raises(ValueError, match="--store"):
        store_opener(None, etcd_cafile=tls.ca)
