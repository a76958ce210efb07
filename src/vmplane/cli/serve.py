"""``vmplane serve``: the API server (and, as other packages hook in, controllers and node agent)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from vmplane.agent.node import DEFAULT_HEARTBEAT_INTERVAL
from vmplane.apiserver.app import ListenAddress, run_server
from vmplane.apiserver.connections import ConnectionLimits
from vmplane.apiserver.context import ServerSettings
from vmplane.app import ControlPlane, PlaneOptions
from vmplane.cli.health_flags import add_fence_timeout_flag, add_node_monitor_flags, health_from
from vmplane.cli.store_flags import add_store_flags, opener_from
from vmplane.hypervisor.guestfs import GuestSetupError
from vmplane.store.base import StoreError

__all__ = ["default_data_dir", "register"]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/vmplane``, or ``~/.local/share/vmplane``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vmplane"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the API server",
        description="Run the control plane on this host: the Kubernetes-compatible API (HTTPS), the VM "
        "controller, the scheduler and the node agent, on the embedded SQLite store in DATA_DIR (or an "
        "etcd cluster, --store). It "
        "prints the kubeconfig path for kubectl once it is ready.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="state directory (default: %(default)s)")
    parser.add_argument(
        "--guest-dir",
        type=Path,
        default=None,
        help="QEMU's machines, volumes and images; every parent must be searchable by QEMU's user "
        "(default: /var/lib/vmplane as root, else DATA_DIR/guests)",
    )
    parser.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--tls-cert", type=Path, default=None, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, default=None, help="server key (PEM)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--hypervisor",
        default="qemu",
        choices=["qemu", "simulated"],
        help="run guests in QEMU (default) or in a simulated hypervisor",
    )
    parser.add_argument(
        "--simulated-latency",
        type=float,
        default=0.01,
        metavar="SECONDS",
        help="how long each request to the simulated hypervisor takes (default: %(default)s)",
    )
    parser.add_argument(
        "--accel",
        default="auto",
        choices=["auto", "kvm", "tcg"],
        help="QEMU acceleration: KVM when a probe shows it works (auto), or forced",
    )
    parser.add_argument("--node-name", default="node01", help="this host's Node name (default: %(default)s)")
    parser.add_argument(
        "--node-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra label on this host's Node (repeatable)",
    )
    parser.add_argument(
        "--node-status-interval",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        metavar="SECONDS",
        help="how often the Node's Ready heartbeat is renewed, as a kubelet's nodeStatusUpdateFrequency "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--demo",
        nargs="?",
        const=Path("guest/out"),
        type=Path,
        default=None,
        metavar="GUEST_DIR",
        help="create the demo VM default/demo, booting the test guest in GUEST_DIR (default: guest/out)",
    )
    parser.add_argument(
        "--crash-backoff",
        type=float,
        default=10.0,
        help="seconds before restarting a failed guest, doubling per failure",
    )
    add_node_monitor_flags(parser)
    add_fence_timeout_flag(parser, help_end="shorter than the grace period")
    parser.add_argument(
        "--host-disk-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a directory hostDisk paths may lie under (repeatable; default: GUEST_DIR/hostdisks)",
    )
    limits, settings = ConnectionLimits(), ServerSettings()
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=limits.header_timeout,
        help="seconds a new connection has for its TLS handshake and request headers (default: %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=limits.idle_timeout,
        help="seconds an idle keep-alive connection is kept (default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=limits.max_connections,
        help="open connections beyond which new ones get 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--watch-buffer-bytes",
        type=int,
        default=settings.watch_buffer_bytes,
        help="unread bytes after which a slow watcher is closed (default: %(default)s)",
    )
    add_store_flags(parser)
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        listen = ListenAddress.parse(args.listen)
        labels = dict(_label(text) for text in args.node_label)
        open_store = opener_from(args)
        health = health_from(args)
    except ValueError as err:
        print(f"vmplane serve: {err}", file=sys.stderr)
        return 2
    data_dir = args.data_dir or default_data_dir()
    options = PlaneOptions(
        data_dir=data_dir,
        hypervisor=args.hypervisor,
        accel=args.accel,
        node_name=args.node_name,
        node_labels=labels,
        crash_backoff=args.crash_backoff,
        node_status_interval=args.node_status_interval,
        node_health=health,
        host_disk_dirs=tuple(args.host_disk_dir),
        demo_guest=args.demo.resolve() if args.demo is not None else None,
        guest_dir=args.guest_dir,
        simulated_latency=args.simulated_latency,
    )

    def ready(path: Path) -> None:
        print(f"kubeconfig: {path}", flush=True)
        server, token = _server_and_token(path)
        print(f"console: {server}/ui/", flush=True)
        # The demo is for a first look on one's own machine: hand over the admin token to sign in
        # with; otherwise say where it is rather than print a secret into a log.
        if args.demo is not None:
            print(f"console token (admin): {token}", flush=True)
        else:
            print(f"console token: `vmplane kubeconfig` prints it (or {data_dir / 'token'})", flush=True)

    try:
        asyncio.run(
            run_server(
                data_dir=data_dir,
                listen=listen,
                plane=lambda store: ControlPlane(store, options),
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                on_ready=ready,
                settings=ServerSettings(watch_buffer_bytes=args.watch_buffer_bytes),
                open_store=open_store,
                limits=ConnectionLimits(
                    header_timeout=args.header_timeout,
                    idle_timeout=args.idle_timeout,
                    max_connections=args.max_connections,
                ),
            )
        )
    except (OSError, ValueError, GuestSetupError, StoreError) as err:
        print(f"vmplane serve: {err}", file=sys.stderr)
        return 1
    return 0


def _server_and_token(kubeconfig: Path) -> tuple[str, str]:
    """The server URL and the token of the kubeconfig ``serve`` wrote."""
    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["clusters"][0]["cluster"]["server"]), str(config["users"][0]["user"]["token"])


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--node-label: expected KEY=VALUE, got {text!r}")
    return key, value
