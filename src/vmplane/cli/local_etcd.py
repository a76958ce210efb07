"""A 3-member etcd cluster on loopback for ``vmplane dev-cluster --store etcd``.

Debian's ``etcd-server`` binary (``etcd``), one process and data directory per member under
``DIR/etcd``, client and peer ports chosen free on 127.0.0.1, plain HTTP (loopback only; a real
deployment uses etcd's client TLS, ``--etcd-cafile/--etcd-certfile/--etcd-keyfile``). Elections are
quicker than etcd's defaults so the loss of the leader costs about a second.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalEtcd"]

_HEALTH_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EtcdMember:
    name: str
    client_port: int = field(default_factory=_free_port)
    peer_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class LocalEtcd:
    """``size`` etcd members under ``root``; ``start`` returns once every member reports healthy."""

    root: Path
    size: int = 3
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``--store`` value for the API servers: every member, failed over in order."""
        return "etcd://" + ",".join(member.endpoint for member in self.members)

    def start(self) -> None:
        self.members = [EtcdMember(f"etcd{index + 1}") for index in range(self.size)]
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for member in self.members:
            argv = [
                "etcd",
                f"--name={member.name}",
                f"--data-dir={self.root / member.name}",
                f"--listen-client-urls=http://{member.endpoint}",
                f"--advertise-client-urls=http://{member.endpoint}",
                f"--listen-peer-urls=http://127.0.0.1:{member.peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{member.peer_port}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                "--initial-cluster-token=vmplane-dev",
                "--heartbeat-interval=50",
                "--election-timeout=500",
                # The API takes objects up to 3 MiB; etcd's default request limit is 1.5 MiB.
                "--max-request-bytes=4194304",
            ]
            with (self.root / f"{member.name}.log").open("ab") as log:
                member.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        for member in self.members:
            self._wait_healthy(member)

    def _wait_healthy(self, member: EtcdMember) -> None:
        deadline = time.monotonic() + _HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            if member.process is not None and member.process.poll() is not None:
                raise RuntimeError(f"etcd member {member.name} exited; see {self.root / member.name}.log")
            try:
                with urllib.request.urlopen(f"http://{member.endpoint}/health", timeout=2) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"etcd member {member.name} did not become healthy in {_HEALTH_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """SIGTERM every member (killed after 10 s)."""
        for member in self.members:
            if member.process is None:
                continue
            if member.process.poll() is None:
                member.process.terminate()
            try:
                member.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=10)
