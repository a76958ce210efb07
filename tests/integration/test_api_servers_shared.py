"""Two ``vmplane apiserver`` processes over one etcd serve one API with one set of identities.

Each API server has its own data directory (its own admin token) and port; the tokens and the
serving CA they share come from the store. A kubeconfig from one works against the other with only
its ``server`` changed; a token minted on one host is admitted (and, revoked, refused) by the other;
a watch on either sees the writes made through both, in order, exactly once; with one stopped,
kubectl against the other works and a client given both (further cluster entries) fails over.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from apiservers_support import (
    VMPLANE,
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
from vmplane.apiserver.kubeconfig import render_kubeconfig
from vmplane.client.config import https_client, read_kubeconfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires("kubectl", "etcd"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServerProcess, ApiServerProcess]]:
    etcd = EtcdCluster(in_memory=True).start()
    root = tmp_path_factory.mktemp("apiservers")
    started: list[ApiServerProcess] = []
    try:
        started.append(start_apiserver(root, "a", etcd.url()))
        started.append(start_apiserver(root, "b", etcd.url()))
        yield started[0], started[1]
    finally:
        for server in started:
            stop_apiserver(server)
        etcd.stop()


def eventually(check: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_kubeconfig_from_one_api_server_works_against_the_other_with_only_its_server_changed(
    servers: tuple[ApiServerProcess, ApiServerProcess], tmp_path: Path
) -> None:
    a, b = servers
    a_at_b = pointed_at(a.kubeconfig, b, tmp_path / "a-at-b")
    b_at_a = pointed_at(b.kubeconfig, a, tmp_path / "b-at-a")
    for kubeconfig in (a_at_b, b_at_a):
        got = kubectl(kubeconfig, "get", "namespaces", "-o", "name")
        assert got.returncode == 0, got.stderr
        assert "namespace/default" in got.stdout


def test_the_second_api_server_serves_a_certificate_from_the_first_ones_ca(
    servers: tuple[ApiServerProcess, ApiServerProcess],
) -> None:
    a, b = servers
    assert (a.data_dir / "tls" / "ca.crt").read_bytes() == (b.data_dir / "tls" / "ca.crt").read_bytes()
    assert not (b.data_dir / "tls" / "ca.key").exists(), "the CA key is kept in the store only"


def test_a_token_minted_on_one_host_is_admitted_by_the_other_and_its_revoke_reaches_it(
    servers: tuple[ApiServerProcess, ApiServerProcess], tmp_path: Path
) -> None:
    a, b = servers
    made = subprocess.run(
        [
            *VMPLANE,
            "token",
            "create",
            "--role",
            "viewer",
            "--data-dir",
            str(a.data_dir),
            "--server",
            b.server,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    viewer = tmp_path / "viewer"
    viewer.write_text(made.stdout)
    viewer.chmod(0o600)
    assert eventually(lambda: kubectl(viewer, "get", "vm").returncode == 0)
    listed = subprocess.run(
        [*VMPLANE, "token", "list", "--data-dir", str(a.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "viewer" in line)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vmplane.cli.main",
            "token",
            "revoke",
            token_id,
            "--data-dir",
            str(a.data_dir),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert eventually(lambda: "Unauthorized" in kubectl(viewer, "get", "vm").stderr)


def test_writes_through_both_are_seen_by_a_watch_on_each_in_order_exactly_once(
    servers: tuple[ApiServerProcess, ApiServerProcess], tmp_path: Path
) -> None:
    a, b = servers
    a_at_b = pointed_at(a.kubeconfig, b, tmp_path / "a-at-b")
    listed = json.loads(kubectl(a.kubeconfig, "get", "--raw", VMS).stdout)
    since = listed["metadata"]["resourceVersion"]
    watches = [RawWatch(a.kubeconfig, a, since), RawWatch(a.kubeconfig, b, since)]
    acknowledged: list[tuple[str, str, str]] = []
    for n in range(12):
        through = a.kubeconfig if n % 2 == 0 else a_at_b
        made = kubectl(
            through, "create", "-o", "json", "-f", "-", stdin=CPU_HOTPLUG_VM.format(name=f"both-{n}")
        )
        assert made.returncode == 0, made.stderr
        metadata = json.loads(made.stdout)["metadata"]
        acknowledged.append(("ADDED", metadata["name"], metadata["resourceVersion"]))
    for watch in watches:
        assert watch.finish() == acknowledged


def test_with_one_api_server_stopped_kubectl_against_the_other_works_and_clients_fail_over(
    servers: tuple[ApiServerProcess, ApiServerProcess], tmp_path: Path
) -> None:
    """Runs last: it stops the first API server."""
    a, b = servers
    admin = read_kubeconfig(a.kubeconfig)
    assert admin.token is not None
    both = tmp_path / "both"
    both.write_text(
        render_kubeconfig(
            server=a.server, token=admin.token, ca_pem=admin.ca_pem, fallback_servers=[b.server]
        )
    )
    both.chmod(0o600)
    stop_apiserver(a)
    got = kubectl(pointed_at(a.kubeconfig, b, tmp_path / "a-at-b"), "get", "vm", "-o", "name")
    assert got.returncode == 0, got.stderr

    async def through_the_client() -> list[str]:
        client = https_client(read_kubeconfig(both))
        try:
            vm = yaml.safe_load(CPU_HOTPLUG_VM.format(name="after-failover"))
            vm["metadata"]["namespace"] = "default"
            await client.create(VIRTUAL_MACHINES, vm)
            listed = await client.list(VIRTUAL_MACHINES, "default")
            return [item["metadata"]["name"] for item in listed.items]
        finally:
            await client.close()

    assert "after-failover" in asyncio.run(asyncio.wait_for(through_the_client(), 30))
