"""Shared by the tests that drive a multi-process ``LocalCluster`` (drain, placement, migration on
QEMU): the cluster for a module, the ``vmplane`` command against it, and the waits they share."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vmplane.cli.dev_cluster import LocalCluster

Predicate = Callable[[dict[str, Any] | None], bool]


@contextmanager
def local_cluster(root: Path, nodes: tuple[str, ...], **options: Any) -> Iterator[LocalCluster]:
    """API server, one controller and an agent per node, all stopped at the end."""
    cluster = LocalCluster(root=root, **options)
    try:
        cluster.start(controllers=1, nodes=nodes)
        yield cluster
    finally:
        cluster.stop_all()


def vmplane(local: LocalCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``vmplane ARGS`` as the cluster's admin."""
    return subprocess.run(
        [sys.executable, "-m", "vmplane.cli.main", *args, "--kubeconfig", str(local.admin_kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def running_on(node: str, *, not_uid: str | None = None) -> Predicate:
    """A VMI Running on ``node`` (and, given ``not_uid``, another VMI than that one)."""

    def holds(o: dict[str, Any] | None) -> bool:
        status = (o or {}).get("status") or {}
        fresh = not_uid is None or ((o or {}).get("metadata") or {}).get("uid") != not_uid
        return status.get("phase") == "Running" and status.get("nodeName") == node and fresh

    return holds
