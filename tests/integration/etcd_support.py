"""Real etcd members on loopback for tests and benchmarks: start, kill -9, restart, ask who leads.

Each member gets free ports and its own data directory; ``EtcdCluster.stop`` kills every process it
started. Members talk plain HTTP on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EtcdCluster", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """``size`` members in ``root`` (a temporary directory by default, removed by ``stop``)."""

    size: int = 1
    root: Path | None = None
    in_memory: bool = False  # data directories on /dev/shm: fast fsyncs, for the contract suites
    members: list[_Member] = field(default_factory=list)
    _owned_root: bool = False

    def start(self, *, timeout: float = 20.0) -> EtcdCluster:
        if self.root is None:
            shm = "/dev/shm" if self.in_memory and os.path.isdir("/dev/shm") else None
            self.root = Path(tempfile.mkdtemp(prefix="vmplane-etcd-", dir=shm))
            self._owned_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        for index in range(self.size):
            name = f"m{index}"
            self.members.append(
                _Member(name, free_port(), free_port(), self.root / name, self.root / f"{name}.log")
            )
        for member in self.members:
            self._launch(member, state="new")
        self.wait_healthy(timeout=timeout)
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(member.endpoint for member in self.members)

    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def _launch(self, member: _Member, *, state: str) -> None:
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        argv = [
            "etcd",
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls=http://127.0.0.1:{member.client_port}",
            f"--advertise-client-urls=http://127.0.0.1:{member.client_port}",
            f"--listen-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-state={state}",
            "--initial-cluster-token=vmplane-test",
            # Quicker elections than the 1 s default, so failover tests stay short.
            "--heartbeat-interval=50",
            "--election-timeout=500",
            # The API takes objects up to 3 MiB; etcd's default request limit is 1.5 MiB.
            "--max-request-bytes=4194304",
        ]
        with member.log.open("ab") as log:
            member.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def etcdctl(self, *args: str, endpoints: tuple[str, ...] | None = None, timeout: float = 10.0) -> str:
        env = {**os.environ, "ETCDCTL_API": "3"}
        command = ["etcdctl", f"--endpoints={','.join(endpoints or self.endpoints)}", *args]
        done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=True)
        return done.stdout.decode()

    def wait_healthy(self, *, timeout: float = 20.0, members: list[_Member] | None = None) -> None:
        give_up = time.monotonic() + timeout
        for member in members or self.members:
            while True:
                try:
                    self.etcdctl("endpoint", "health", endpoints=(member.endpoint,), timeout=5)
                    break
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                    if member.process is not None and member.process.poll() is not None:
                        raise RuntimeError(
                            f"etcd {member.name} exited: {member.log.read_text()[-2000:]}"
                        ) from err
                    if time.monotonic() > give_up:
                        raise RuntimeError(
                            f"etcd {member.name} not healthy: {member.log.read_text()[-2000:]}"
                        ) from err
                    time.sleep(0.1)

    def leader(self) -> _Member:
        import json

        for member in self.members:
            if member.process is None or member.process.poll() is not None:
                continue
            try:
                out = self.etcdctl(
                    "endpoint", "status", "-w", "json", endpoints=(member.endpoint,), timeout=5
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                continue
            [status] = json.loads(out)
            if status["Status"]["leader"] == status["Status"]["header"]["member_id"]:
                return member
        raise RuntimeError("no etcd leader")

    def kill(self, member: _Member) -> None:
        """kill -9, as a crash."""
        if member.process is not None and member.process.poll() is None:
            os.killpg(member.process.pid, signal.SIGKILL)
            member.process.wait(10)

    def stop_member(self, member: _Member) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.terminate()
            member.process.wait(10)

    def restart(self, member: _Member, *, timeout: float = 20.0) -> None:
        self._launch(member, state="existing")
        self.wait_healthy(timeout=timeout, members=[member])

    def stop(self) -> None:
        for member in self.members:
            self.kill(member)
        if self._owned_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
