"""The composition root: the only place that picks concrete adapters and wires them together.

``ControlPlane`` is what ``vmplane serve`` runs beside the API on one store: the VM controller, the
scheduler and this host's node agent with its hypervisor driver; and it gives the API its typed
kinds and subresources.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiohttp import web

from vmplane import __version__
from vmplane.agent.agent import NodeAgent
from vmplane.agent.console import QemuConsoleLogs, QemuGuestStreams
from vmplane.agent.guestfs import GuestUser, default_guest_dir, guest_user, prepare_guest_dir
from vmplane.agent.hypervisor import Hypervisor, OnChange
from vmplane.agent.machine import HostPaths
from vmplane.agent.node import DEFAULT_HEARTBEAT_INTERVAL, host_facts, qemu_runtime_version
from vmplane.agent.qemu import QemuHypervisor
from vmplane.agent.qemu.machine_types import FALLBACK_MACHINE_TYPES, MachineTypesError, q35_machine_types
from vmplane.agent.scheduler import Scheduler
from vmplane.agent.simulated import SIMULATED_CAPACITY, SimulatedHypervisor
from vmplane.agent.volumes import QemuVolumePreparer
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.controller.kubevirt_status import KubeVirtStatusController
from vmplane.controller.manager import ControllerManager
from vmplane.controller.node_health import HealthConfig
from vmplane.controller.vm import cluster_configuration
from vmplane.demo import install_demo
from vmplane.metrics import FleetCollector, Metrics
from vmplane.reconcile.events import EventRecorder
from vmplane.server.console import ConsoleSource, add_console_routes
from vmplane.server.context import ApiContext
from vmplane.server.guest_subresources import add_guest_operation_routes
from vmplane.server.registry import Registry
from vmplane.server.streams import StreamBridge, add_stream_routes
from vmplane.server.subresources import add_subresource_routes
from vmplane.server.typed_kinds import typed_registry
from vmplane.store.base import JsonObject, Store
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig, parse_store_url

__all__ = ["ControlPlane", "PlaneOptions", "StoreOpener", "store_opener"]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PlaneOptions:
    """How ``vmplane serve`` runs guests on this host.

    ``guest_dir``: QEMU's machines, volumes and images (``agent.guestfs`` has the layout and why it is
    not inside the 0700 data directory); default ``/var/lib/vmplane`` as root, else
    ``<data_dir>/guests``.
    ``host_disk_dirs``: where ``hostDisk`` paths may point (default ``<guest_dir>/hostdisks``).
    ``demo_guest``: a built test guest to install as an image, creating the demo VM (``--demo``).
    ``node_status_interval``: seconds between renewals of the Node's heartbeat.
    ``simulated_latency``: seconds each request to the simulated hypervisor takes (0 for scale
    benchmarks, where the control plane's own cost is what is measured).
    ``node_health``: when a silent node is unreachable, and when its agent fences its guests.
    ``window_poll_interval``: the longest maintenance windows go without looking at the clock.
    """

    data_dir: Path
    hypervisor: Literal["qemu", "simulated"] = "qemu"
    node_name: str = "node01"
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    node_labels: dict[str, str] = field(default_factory=dict)
    crash_backoff: float = 10.0
    node_status_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    node_health: HealthConfig = field(default_factory=HealthConfig)
    host_disk_dirs: tuple[Path, ...] = ()
    demo_guest: Path | None = None
    guest_dir: Path | None = None
    simulated_latency: float = 0.01
    window_poll_interval: float = 30.0

    @property
    def guest_root(self) -> Path:
        """``guest_dir`` or its default for this process's user, absolute."""
        chosen = self.guest_dir or default_guest_dir(euid=os.geteuid(), data_dir=self.data_dir)
        return chosen.absolute()

    @property
    def allowed_host_dirs(self) -> tuple[Path, ...]:
        """``host_disk_dirs`` (or the default), as absolute paths."""
        return tuple(d.absolute() for d in self.host_disk_dirs or (self.guest_root / "hostdisks",))

    @property
    def machines_dir(self) -> Path:
        """Where QEMU machines keep their run directories (QMP socket, console log, record)."""
        return self.guest_root / "machines"


def _machine_types() -> tuple[str, ...]:
    """What ``domain.machine.type`` may name: the q35 machines of this host's QEMU (asked once).

    A host without QEMU (simulated guests) admits ``q35`` only; the QEMU driver refuses to start a
    machine whose type its binary does not list, whatever admission let through.
    """
    try:
        return q35_machine_types()
    except MachineTypesError:
        return FALLBACK_MACHINE_TYPES


class _LateClusterView:
    """Admission's view of the cluster, read from the controllers' caches.

    The manager is set after the registry is built: the namespace controller needs the registry's
    namespaced kinds, and admission needs the manager's caches only once requests arrive.
    """

    manager: ControllerManager | None = None

    def _manager(self) -> ControllerManager:
        assert self.manager is not None, "the control plane is not wired yet"
        return self.manager

    def configuration(self) -> KubeVirtConfiguration:
        return cluster_configuration(self._manager().kubevirts)

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return self._manager().vmis.get(namespace, name)

    def lookup(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        return self._manager().lookup(resource, namespace, name)


class ControlPlane:
    """Controllers, scheduler and node agent on one store, plus the API's typed kinds."""

    def __init__(
        self,
        store: Store,
        options: PlaneOptions,
        *,
        clock: Callable[[], datetime] = utc_now,
        hypervisor: Callable[[OnChange], Hypervisor] | None = None,
        console: ConsoleSource | None = None,
    ) -> None:
        """``hypervisor`` overrides the driver ``options`` choose (tests inject failures through it);
        ``console`` where console logs are read (default: QEMU's, none for simulated guests).

        With the QEMU driver this resolves who QEMU runs as and prepares the guest directory, raising
        ``guestfs.GuestSetupError`` (one line saying what to do) if either is impossible.
        """
        self._store = store
        self._options = options
        self._events = EventRecorder(store, component="virt-controller", clock=clock)
        self._cluster = _LateClusterView()
        self.registry: Registry = typed_registry(
            self._cluster,
            allowed_host_dirs=tuple(str(d) for d in options.allowed_host_dirs),
            machine_types=_machine_types(),
        )
        self.manager = ControllerManager(
            store=store,
            events=self._events,
            clock=clock,
            crash_backoff=options.crash_backoff,
            window_poll_interval=options.window_poll_interval,
            namespaced_resources=tuple(r.store_resource for r in self.registry if r.namespaced),
            node_health=options.node_health,
        )
        self._cluster.manager = self.manager
        self.scheduler = Scheduler(store=store, clock=clock)
        paths = HostPaths(options.guest_root, host_disk_dirs=options.allowed_host_dirs)
        qemu = options.hypervisor == "qemu"
        self._user: GuestUser | None = None
        if qemu:
            self._user = guest_user(euid=os.geteuid())
            prepare_guest_dir(options.guest_root, self._user)
        self.agent = NodeAgent(
            store=store,
            hypervisor=hypervisor or self._hypervisor,
            node_name=options.node_name,
            paths=paths,
            clock=clock,
            preparer=QemuVolumePreparer(
                paths=paths, allowed_host_dirs=options.allowed_host_dirs, user=self._user
            )
            if qemu
            else None,
            node_labels=options.node_labels,
            heartbeat_interval=options.node_status_interval,
            capacity=None if qemu else SIMULATED_CAPACITY,
            fence_timeout=options.node_health.fence_timeout,
            host=host_facts(runtime_version=qemu_runtime_version() if qemu else f"simulated://{__version__}"),
        )
        self._console = console or (QemuConsoleLogs(options.machines_dir) if qemu else None)
        driver = self.agent.hypervisor
        forwarder = driver if isinstance(driver, QemuHypervisor) else None
        self._streams = QemuGuestStreams(options.machines_dir, forwarder) if qemu else None
        self.kubevirt_status = KubeVirtStatusController(store=store, clock=clock)

    def _hypervisor(self, on_change: OnChange) -> Hypervisor:
        if self._options.hypervisor == "simulated":
            return SimulatedHypervisor(on_change=on_change, latency=self._options.simulated_latency)
        return QemuHypervisor(
            base_dir=self._options.machines_dir,
            accel=self._options.accel,
            on_change=on_change,
            user=self._user,
        )

    def instrument(self, metrics: Metrics) -> None:
        """Report every work queue, the agent's hotplugs and the fleet (read from caches) to ``metrics``."""
        for controller in (
            self.manager.controller,
            self.manager.namespace_controller,
            self.manager.garbage_collector.controller,
            self.scheduler.controller,
            self.agent.controller,
            self.kubevirt_status.controller,
        ):
            controller.queue.observer = metrics.queue(controller.name)
        self.agent.on_hotplug = metrics.hotplug
        metrics.register(FleetCollector(vms=self.manager.vms.list, vmis=self.manager.vmis.list))

    def add_routes(self, app: web.Application, ctx: ApiContext) -> None:
        """The ``subresources.kubevirt.io`` routes."""
        add_subresource_routes(app, ctx, self._cluster)
        bridge = StreamBridge(ctx, self._streams) if self._streams is not None else None
        add_console_routes(app, ctx, self._console, bridge)
        if bridge is not None:
            add_stream_routes(app, ctx, bridge)
        add_guest_operation_routes(app, ctx)

    async def run(self) -> None:
        """Run the controllers, the scheduler and the node agent until cancelled."""
        await self.manager.start()
        await self.scheduler.start()
        await self.agent.start()
        await self.kubevirt_status.start()
        if self._options.demo_guest is not None:
            await install_demo(
                self._store,
                paths=HostPaths(self._options.guest_root),
                guest_dir=self._options.demo_guest,
            )
        try:
            await asyncio.Event().wait()
        finally:
            await self.kubevirt_status.stop()
            await self.agent.stop()
            await self.scheduler.stop()
            await self.manager.stop()


StoreOpener = Callable[[Path], Awaitable[Store]]


def store_opener(
    url: str | None,
    *,
    etcd_cafile: Path | None = None,
    etcd_certfile: Path | None = None,
    etcd_keyfile: Path | None = None,
) -> StoreOpener | None:
    """The backend ``--store`` names: None for the embedded SQLite store in the data directory,
    EtcdStore for ``etcd://HOST:PORT[,HOST:PORT...]`` (optionally over client TLS).

    Raises ValueError naming the flag when the URL or the TLS files do not fit together.
    """
    tls = (etcd_cafile, etcd_certfile, etcd_keyfile)
    if url is None:
        if any(path is not None for path in tls):
            raise ValueError("--etcd-cafile/--etcd-certfile/--etcd-keyfile need --store etcd://...")
        return None
    if (etcd_certfile is None) != (etcd_keyfile is None):
        raise ValueError("--etcd-certfile and --etcd-keyfile go together")
    config = EtcdConfig(
        parse_store_url(url), cafile=etcd_cafile, certfile=etcd_certfile, keyfile=etcd_keyfile
    )

    async def open_etcd(data_dir: Path) -> Store:
        return await EtcdStore.open(config)

    return open_etcd
