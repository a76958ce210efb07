"""``vmplane dev-cluster``: a local multi-process cluster on loopback, and the library tests drive.

One API server, two leader-elected controllers and three node agents (``node01``..``node03``, each
with its own data directory and node identity), every one a separate ``vmplane`` process whose log is
``DIR/logs/NAME.log``. It prints the admin kubeconfig and runs until interrupted, then stops them all.

A controller that loses its leadership exits (as kube-controller-manager does) and is started again,
as a service manager would: ``supervise`` runs that in a background thread.

With ``--store etcd`` (``store="etcd"``) a 3-member etcd cluster on loopback is started first and
two API servers run over it, sharing tokens and serving CA through the store; every other process's
kubeconfig names the second API server as its fallback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmplane.apiserver.authz import Role
from vmplane.apiserver.kubeconfig import render_kubeconfig
from vmplane.apiserver.tokens import create_token
from vmplane.cli.local_etcd import LocalEtcd
from vmplane.client.config import read_kubeconfig

__all__ = ["LocalCluster", "read_ready_line", "register"]

READY_TIMEOUT = 30.0
NODES = ("node01", "node02", "node03")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@dataclass
class LocalCluster:
    """The processes of one local cluster under ``root``; every start is waited for, every stop bounded."""

    root: Path
    hypervisor: str = "simulated"
    #: Where each agent keeps its guests (``GUEST_ROOT/NODE``); None: in its data directory. With
    #: QEMU run as root, this must be searchable by QEMU's user (pytest's temporary dirs are not).
    guest_root: Path | None = None
    #: ``--node-monitor-grace-period`` of the controllers and ``--node-fence-timeout`` of the
    #: controllers and agents (None: their defaults, 40 s and 30 s).
    grace_period: float | None = None
    fence_timeout: float | None = None
    #: The simulated agents' ``--simulated-latency`` (None: its default).
    simulated_latency: float | None = None
    port: int = field(default_factory=_free_port)
    #: ``etcd``: a 3-member etcd on loopback under ``DIR/etcd`` and a second API server over it
    #: (``apiserver2`` on ``port2``); None: one API server on SQLite.
    store: str | None = None
    port2: int = field(default_factory=_free_port)
    etcd: LocalEtcd | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    admin_kubeconfig: Path | None = None
    #: Each controller's and agent's ``/metrics`` port (name -> port), kept across its restarts.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    #: Controllers started again after they exited on their own (name -> how many times).
    restarts: dict[str, int] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    @property
    def api_dir(self) -> Path:
        return self.root / "apiserver"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "vmplane.cli.main", *args], stdout=subprocess.PIPE, stderr=log
            )
        self.processes[name] = process
        return process

    def start_apiserver(self, name: str = "apiserver") -> Path:
        """Start (or restart, on the same port and data) an API server; its admin kubeconfig.

        ``apiserver2`` exists only over etcd; ``admin_kubeconfig`` is the first one's."""
        port = self.port if name == "apiserver" else self.port2
        store = ("--store", self.etcd.url) if self.etcd is not None else ()
        process = self._spawn(
            name,
            *("apiserver", "--data-dir", str(self.root / name), "--listen", f"127.0.0.1:{port}"),
            *store,
            "--log-level",
            "debug",
        )
        kubeconfig = Path(read_ready_line(process).split("kubeconfig:", 1)[1].strip())
        if name == "apiserver":
            self.admin_kubeconfig = kubeconfig
        return kubeconfig

    @property
    def servers(self) -> list[str]:
        """Every API server's URL, the first one's first."""
        ports = [self.port, self.port2] if self.etcd is not None else [self.port]
        return [f"https://127.0.0.1:{port}" for port in ports]

    def kubeconfig_for(self, name: str, role: Role, *, node: str | None = None) -> Path:
        """A kubeconfig with a new token of ``role`` (minted in the API server's data directory)."""
        assert self.admin_kubeconfig is not None, "start the API server first"
        admin = read_kubeconfig(self.admin_kubeconfig)
        _, token = create_token(self.api_dir, role, node=node)
        path = self.root / f"{name}.kubeconfig"
        # Over etcd the token reaches the second API server through the store; the client fails
        # over to it when the first is down.
        text = render_kubeconfig(
            server=admin.server, token=token, ca_pem=admin.ca_pem, fallback_servers=self.servers[1:]
        )
        _private_write(path, text)
        return path

    def _metrics_listen(self, name: str) -> tuple[str, str]:
        port = self.metrics_ports.setdefault(name, _free_port())
        return "--metrics-listen", f"127.0.0.1:{port}"

    def metrics_url(self, name: str) -> str:
        """Where controller or agent ``name`` serves ``/metrics`` (HTTPS, self-signed)."""
        return f"https://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def start_controller(self, name: str) -> subprocess.Popen[bytes]:
        kubeconfig = self.root / f"{name}.kubeconfig"
        if not kubeconfig.exists():
            kubeconfig = self.kubeconfig_for(name, Role.CONTROLLERS)
        return self._spawn(
            name,
            *("controller", "--kubeconfig", str(kubeconfig), "--identity", name, "--crash-backoff", "0.5"),
            *self._metrics_listen(name),
            *self._flag("--node-monitor-grace-period", self.grace_period),
            *self._flag("--node-fence-timeout", self.fence_timeout),
        )

    @staticmethod
    def _flag(name: str, value: float | None) -> tuple[str, ...]:
        return () if value is None else (name, str(value))

    def start_agent(
        self, node: str, *, labels: str = "", taints: str = "", status_interval: float = 10.0
    ) -> subprocess.Popen[bytes]:
        kubeconfig = self.kubeconfig_for(node, Role.NODE, node=node)
        return self._spawn(
            node,
            *("agent", "--kubeconfig", str(kubeconfig), "--node", node),
            *("--data-dir", str(self.root / node), "--hypervisor", self.hypervisor),
            *("--node-labels", labels, "--node-taints", taints),
            *("--node-status-interval", str(status_interval)),
            *self._metrics_listen(node),
            *(("--guest-dir", str(self.guest_root / node)) if self.guest_root is not None else ()),
            *self._flag("--node-fence-timeout", self.fence_timeout),
            *self._flag("--simulated-latency", self.simulated_latency),
        )

    def start(self, *, controllers: int = 2, nodes: tuple[str, ...] = NODES) -> Path:
        """The whole cluster: API server, ``controllers`` controllers, one agent per node."""
        if self.store == "etcd":
            self.etcd = LocalEtcd(root=self.root / "etcd")
            self.etcd.start()
        kubeconfig = self.start_apiserver()
        if self.etcd is not None:
            self.start_apiserver("apiserver2")
        for index in range(controllers):
            self.start_controller(f"controller{index + 1}")
        for node in nodes:
            self.start_agent(node, labels=f"vmplane.io/node={node}")
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()
        return kubeconfig

    def _supervise(self) -> None:
        """Start again every controller that exited by itself (lost leadership), every 0.5 s."""
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, process in list(self.processes.items()):
                    if name.startswith("controller") and process.poll() is not None:
                        _close(process)
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        self.start_controller(name)

    def kill(self, name: str) -> None:
        """``kill -9`` one process (not started again by the supervisor)."""
        with self._lock:
            process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)
        _close(process)

    def stop(self, name: str) -> int:
        """SIGTERM one process and wait for it (killed after 15 s); its exit code."""
        with self._lock:
            process = self.processes.pop(name)
        if process.poll() is None:
            process.terminate()
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=10)
        finally:
            _close(process)

    def stop_all(self) -> None:
        """Agents and controllers first, then the API servers, etcd last."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
        for name in sorted(self.processes, key=lambda n: n.startswith("apiserver")):
            self.stop(name)
        if self.etcd is not None:
            self.etcd.stop()

    def log(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdout is not None:
        process.stdout.close()


def read_ready_line(process: subprocess.Popen[bytes]) -> str:
    """The ``kubeconfig: PATH`` line a server prints once it serves (bounded)."""
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    buffer = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
        elif process.poll() is not None:
            break
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"the API server did not become ready (exit {process.poll()})")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev-cluster",
        help="run a local multi-process cluster",
        description="Start an API server, two controllers and three node agents (node01..node03) on "
        "loopback, each a separate process with its own data directory under DIR, and print the "
        "kubeconfig. Ctrl-C stops them all.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="where the processes keep their state")
    parser.add_argument("--hypervisor", default="simulated", choices=["simulated", "qemu"])
    parser.add_argument(
        "--store",
        default="sqlite",
        choices=["sqlite", "etcd"],
        help="etcd: a 3-member etcd cluster on loopback and two API servers over it (needs etcd on PATH)",
    )
    parser.set_defaults(func=_dev_cluster)


def _dev_cluster(args: argparse.Namespace) -> int:
    cluster = LocalCluster(
        root=args.dir.absolute(),
        hypervisor=args.hypervisor,
        store="etcd" if args.store == "etcd" else None,
    )
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop = False

    def interrupted(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        kubeconfig = cluster.start()
        print(f"kubeconfig: {kubeconfig}", flush=True)
        print(f"logs: {args.dir / 'logs'}", flush=True)
        while not stop:
            with contextlib.suppress(InterruptedError):
                signal.pause()
    finally:
        cluster.stop_all()
    return 0
