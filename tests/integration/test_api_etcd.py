"""``vmplane serve --store etcd://...``: the API, controllers and agent on a real etcd, driven by kubectl.

The etcd member is this module's own (the API keeps its objects under the default ``/registry``
prefix); what kubectl writes must be in etcd under the object's key, and a watch through the API
must see a change made through the API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_support import EtcdCluster
from test_api_support import CPU_HOTPLUG_VM, ApiServer, LineReader, start_server, stop_process, stop_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires("kubectl", "etcd"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(in_memory=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = start_server(tmp_path_factory.mktemp("vmplane"), "--store", etcd.url())
    try:
        yield running
    finally:
        assert stop_server(running) == 0, "vmplane serve did not shut down cleanly"


def test_a_vm_created_with_kubectl_is_one_key_in_etcd(server: ApiServer, etcd: EtcdCluster) -> None:
    server.kubectl("apply", "-f", "-", stdin=CPU_HOTPLUG_VM.format(name="etcd-vm"))
    key = "/registry/virtualmachines.kubevirt.io/default/etcd-vm"
    # The VM controller goes on writing the VM's status for a while: compare once a read through
    # the API and the key in etcd are of the same write (the key's mod_revision is the version).
    deadline = time.monotonic() + 30
    while True:
        got = json.loads(server.kubectl("get", "vm", "etcd-vm", "-o", "json").stdout)
        [stored] = json.loads(etcd.etcdctl("get", key, "-w", "json"))["kvs"]
        if str(stored["mod_revision"]) == got["metadata"]["resourceVersion"] or time.monotonic() > deadline:
            break
    assert str(stored["mod_revision"]) == got["metadata"]["resourceVersion"]
    assert not (server.data_dir / "store.db").exists()


def test_kubectl_watch_sees_a_change_made_through_the_api(server: ApiServer) -> None:
    server.kubectl("apply", "-f", "-", stdin=CPU_HOTPLUG_VM.format(name="etcd-watch"))
    watcher = subprocess.Popen(
        ["kubectl", "get", "vm", "etcd-watch", "-w", "--request-timeout=30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server.env(),
    )
    try:
        lines = LineReader(watcher)
        lines.wait_for(lambda line: line.startswith("etcd-watch"))
        server.kubectl(
            "patch", "vm", "etcd-watch", "--subresource", "status", "--type", "merge",
            "-p", '{"status":{"printableStatus":"Starting"}}',
        )  # fmt: skip
        lines.wait_for(lambda line: line.startswith("etcd-watch") and "Starting" in line)
    finally:
        stop_process(watcher)


def test_a_bad_store_url_is_refused_naming_the_flag(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmplane.cli.main",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--store",
            "etcd://x",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--store" in result.stderr
