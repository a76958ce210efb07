"""``vmplane apiserver``, ``vmplane controller`` and ``vmplane agent``: the control plane as separate
processes, each a client of the API (the controller and the agent with a kubeconfig, over TLS).

``vmplane serve`` runs the same parts in one process (``app.ControlPlane``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from vmplane.agent.node import DEFAULT_HEARTBEAT_INTERVAL
from vmplane.api.scheduling import Taint
from vmplane.apiserver.app import ListenAddress, run_server
from vmplane.apiserver.kinds import default_registry
from vmplane.apiserver.metrics_serving import MetricsServer
from vmplane.app import (
    ApiServerPlane,
    ConsoleServing,
    Controllers,
    NodeHost,
    PlaneOptions,
    namespaced_resources,
    report_controllers,
    report_node,
)
from vmplane.cli.health_flags import add_fence_timeout_flag, add_node_monitor_flags, health_from
from vmplane.cli.store_flags import add_store_flags, opener_from
from vmplane.client.config import Kubeconfig, KubeconfigError, https_client, read_kubeconfig
from vmplane.controller.leader import LeaderConfig, LeaderElector
from vmplane.controller.node_health import HealthConfig
from vmplane.hypervisor.guestfs import GuestSetupError
from vmplane.metrics import Metrics
from vmplane.store.base import StoreError

__all__ = ["parse_labels", "parse_taints", "register"]

log = logging.getLogger("vmplane.cli")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def register(subparsers: Any) -> None:
    api = subparsers.add_parser(
        "apiserver",
        help="run the API server alone",
        description="Serve the Kubernetes-compatible API (HTTPS) on the SQLite store in DATA_DIR (or an "
        "etcd cluster, --store), with "
        "admission and authorization, and no controllers or guests. It prints the admin kubeconfig "
        "path once ready; mint component tokens with `vmplane token create`.",
    )
    api.add_argument("--data-dir", type=Path, required=True, help="state directory (store, TLS, tokens)")
    api.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (port 0 picks a free one)")
    add_store_flags(api)
    _log_level(api)
    api.set_defaults(func=_apiserver)

    ctl = subparsers.add_parser(
        "controller",
        help="run the controllers (leader-elected)",
        description="Run the VM and namespace controllers, the garbage collector and the scheduler "
        "against the API server of the kubeconfig. Several may run: the holder of the Lease "
        "kube-system/vmplane-controller acts; one that loses it exits (status 1) to be restarted.",
    )
    ctl.add_argument("--kubeconfig", type=Path, required=True, help="a controllers-role kubeconfig")
    ctl.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stand for the kube-system/vmplane-controller Lease; only its holder acts (default: yes)",
    )
    ctl.add_argument("--identity", default=None, help="leader-election identity (default: HOST_UUID)")
    ctl.add_argument("--crash-backoff", type=float, default=10.0, help="seconds before restarting a guest")
    _metrics_flags(ctl)
    ctl.add_argument(
        "--cert-dir",
        type=Path,
        default=None,
        help="where the /metrics certificate is made (default: a private temporary directory)",
    )
    add_node_monitor_flags(ctl)
    add_fence_timeout_flag(ctl, help_end="the agents' value, which the fencing deadline counts on")
    _log_level(ctl)
    ctl.set_defaults(func=_controller)

    agent = subparsers.add_parser(
        "agent",
        help="run one host's node agent",
        description="Register this host as Node NAME, renew its Lease in kube-node-lease, and run the "
        "VMIs bound to it, as a client of the API server of the kubeconfig (a node token for NAME).",
    )
    agent.add_argument("--kubeconfig", type=Path, required=True, help="a node-role kubeconfig for NAME")
    agent.add_argument("--node", required=True, help="this host's Node name")
    agent.add_argument("--data-dir", type=Path, required=True, help="this agent's state directory")
    agent.add_argument("--guest-dir", type=Path, default=None, help="default: DATA_DIR/guests")
    agent.add_argument("--hypervisor", default="qemu", choices=["qemu", "simulated"])
    agent.add_argument(
        "--simulated-latency",
        type=float,
        default=0.01,
        metavar="SECONDS",
        help="how long each request to the simulated hypervisor takes (default: %(default)s)",
    )
    agent.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    agent.add_argument("--node-labels", default="", metavar="K=V,...", help="labels of this Node")
    agent.add_argument("--node-taints", default="", metavar="K=V:EFFECT,...", help="taints of this Node")
    agent.add_argument(
        "--node-status-interval",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help="seconds between renewals of the Node's Lease (default: %(default)s)",
    )
    add_fence_timeout_flag(agent, help_end="shorter than the controllers' grace period")
    agent.add_argument("--host-disk-dir", action="append", type=Path, default=[], metavar="DIR")
    agent.add_argument(
        "--migration-address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="where guests migrating to this host are received: an address of this host the other "
        "nodes reach (default: %(default)s)",
    )
    agent.add_argument(
        "--shared-volumes-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="a volume directory every node shares (NFS or similar) for claims, so that guests using "
        "them can be live-migrated (default: claims stay on this host and such guests cannot move)",
    )
    agent.add_argument(
        "--console-listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where the API server reads this host's guest consoles (HTTPS; default: %(default)s)",
    )
    _metrics_flags(agent)
    _log_level(agent)
    agent.set_defaults(func=_agent)


def _metrics_flags(parser: argparse.ArgumentParser) -> None:
    # kube-controller-manager's secure port is a fixed 10257 on --bind-address; here the port is a
    # free one by default (printed as "metrics: URL"), since a dev cluster runs several controllers
    # and agents on one host. Loopback by default: pass an address to be scraped from elsewhere.
    parser.add_argument(
        "--metrics-listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where /metrics is served (HTTPS, a token the API server accepts; default: %(default)s)",
    )


async def _serving_metrics(
    metrics: Metrics, args: argparse.Namespace, kubeconfig: Kubeconfig, cert_dir: Path
) -> MetricsServer:
    listen = ListenAddress.parse(args.metrics_listen)
    server = MetricsServer(
        metrics, host=listen.host, port=listen.port, cert_dir=cert_dir, kubeconfig=kubeconfig
    )
    print(f"metrics: {await server.start()}", flush=True)
    return server


def _log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (kubelet's ``--node-labels``)."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--node-labels: expected KEY=VALUE, got {item!r}")
        labels[key] = value
    return labels


def parse_taints(text: str) -> tuple[Taint, ...]:
    """``k=v:Effect,k2:Effect`` (kubelet's ``--register-with-taints``)."""
    taints: list[Taint] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        rest, sep, effect = item.rpartition(":")
        key, _, value = rest.partition("=")
        if not sep or not key or effect not in _EFFECTS:
            raise ValueError(f"--node-taints: expected KEY[=VALUE]:{'|'.join(_EFFECTS)}, got {item!r}")
        taints.append(Taint(key=key, value=value, effect=effect))  # type: ignore[arg-type]
    return tuple(taints)


def _logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` until it returns or SIGTERM/SIGINT cancels it (exit 0)."""

    async def supervised() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await main
        except asyncio.CancelledError:
            return 0

    return asyncio.run(supervised())


def _apiserver(args: argparse.Namespace) -> int:
    _logging(args)
    try:
        listen = ListenAddress.parse(args.listen)
        open_store = opener_from(args)
    except ValueError as err:
        print(f"vmplane apiserver: {err}", file=sys.stderr)
        return 2
    # No guests here: admission's hostDisk and machine-type rules use this host's defaults.
    plane = ApiServerPlane(PlaneOptions(data_dir=args.data_dir, hypervisor="simulated"), proxy_consoles=True)

    def ready(path: Path) -> None:
        print(f"kubeconfig: {path}", flush=True)

    try:
        asyncio.run(
            run_server(
                data_dir=args.data_dir,
                listen=listen,
                plane=lambda _s: plane,
                on_ready=ready,
                open_store=open_store,
                # API servers over one etcd share its tokens and serving CA.
                shared_identity=args.store is not None,
            )
        )
    except (OSError, ValueError, StoreError) as err:
        print(f"vmplane apiserver: {err}", file=sys.stderr)
        return 1
    return 0


async def _controllers(args: argparse.Namespace, cert_dir: Path, health: HealthConfig) -> int:
    kubeconfig = read_kubeconfig(args.kubeconfig)
    metrics = Metrics()

    async def lead() -> None:
        controllers = Controllers(
            client,
            crash_backoff=args.crash_backoff,
            node_health=health,
            namespaced=namespaced_resources(default_registry()),
        )
        report_controllers(metrics, controllers)
        await controllers.start()
        try:
            await asyncio.Event().wait()
        finally:
            await controllers.stop()

    async with contextlib.AsyncExitStack() as stack:
        client = https_client(kubeconfig)
        stack.push_async_callback(client.close)
        # Served from the start, leader or not (as kube-controller-manager); queues report once leading.
        stack.push_async_callback((await _serving_metrics(metrics, args, kubeconfig, cert_dir)).stop)
        if not args.leader_elect:
            await lead()
            return 0
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        await LeaderElector(client, LeaderConfig(identity=identity)).run(lead)
        # As kube-controller-manager: leadership lost, the process ends and is restarted.
        return 1


def _controller(args: argparse.Namespace) -> int:
    _logging(args)
    try:
        health = health_from(args)
        if args.cert_dir is not None:
            return _run(_controllers(args, args.cert_dir, health))
        with tempfile.TemporaryDirectory(prefix="vmplane-controller-") as cert_dir:
            return _run(_controllers(args, Path(cert_dir), health))
    except (KubeconfigError, ValueError, OSError) as err:
        print(f"vmplane controller: {err}", file=sys.stderr)
        return 2


async def _node_agent(args: argparse.Namespace, options: PlaneOptions) -> int:
    kubeconfig = read_kubeconfig(args.kubeconfig)
    client = https_client(kubeconfig)
    try:
        console = ConsoleServing(kubeconfig=kubeconfig, listen=ListenAddress.parse(args.console_listen))
        host = NodeHost(
            client, options, console=console, fence_timeout=args.node_fence_timeout, fence_watchdog=True
        )
        metrics = Metrics()
        report_node(metrics, host)
        server = await _serving_metrics(metrics, args, kubeconfig, options.data_dir / "metrics")
        try:
            await host.start()
            await asyncio.Event().wait()
        finally:
            await host.stop()
            await server.stop()
    finally:
        await client.close()
    return 0


def _migration_address(text: str) -> str:
    """An IP address (it reaches QEMU's ``tcp:`` URI and the target's listening socket)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as err:
        raise ValueError(f"--migration-address: {text!r} is not an IP address") from err


def _agent(args: argparse.Namespace) -> int:
    _logging(args)
    try:
        if not args.node_fence_timeout > 0:
            raise ValueError(f"--node-fence-timeout must be positive, got {args.node_fence_timeout}")
        options = PlaneOptions(
            data_dir=args.data_dir,
            hypervisor=args.hypervisor,
            simulated_latency=args.simulated_latency,
            node_name=args.node,
            accel=args.accel,
            node_labels=parse_labels(args.node_labels),
            node_taints=parse_taints(args.node_taints),
            node_status_interval=args.node_status_interval,
            host_disk_dirs=tuple(args.host_disk_dir),
            guest_dir=args.guest_dir,
            migration_address=_migration_address(args.migration_address),
            shared_volumes_dir=args.shared_volumes_dir,
        )
        args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(args.data_dir, 0o700)
        return _run(_node_agent(args, options))
    except (ValueError, KubeconfigError, GuestSetupError, OSError) as err:
        print(f"vmplane agent: {err}", file=sys.stderr)
        return 2
