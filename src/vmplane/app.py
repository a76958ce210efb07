"""The composition root: the only place that picks concrete adapters and wires them together.

Three parts, each a client of the API: ``ApiServerPlane`` (the API's typed kinds, subresources and
admission's own informers: ``vmplane apiserver``), ``Controllers`` (``vmplane controller``) and
``NodeHost`` (one host's node agent: ``vmplane agent``). ``ControlPlane`` is ``vmplane serve``: all
three in one process, the controllers and the agent reaching the API through its in-process door.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiohttp import web

from vmplane import __version__
from vmplane.agent.agent import NodeAgent
from vmplane.agent.console import QemuConsoleLogs, QemuGuestStreams
from vmplane.agent.machine import machine_name
from vmplane.agent.node import DEFAULT_HEARTBEAT_INTERVAL, HostFacts, host_facts, qemu_runtime_version
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.api.resources import (
    CONTROLLER_REVISIONS,
    KUBEVIRTS,
    NODES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
)
from vmplane.api.scheduling import Taint
from vmplane.apiserver.app import ListenAddress
from vmplane.apiserver.authz import Role, User, node_user, user_for
from vmplane.apiserver.console import ConsoleLog, ConsoleSource, add_console_routes
from vmplane.apiserver.context import ApiContext
from vmplane.apiserver.door import InProcessDoor
from vmplane.apiserver.guest_subresources import GuestAgentQueries, add_guest_operation_routes
from vmplane.apiserver.node_console import (
    PROXY_USER_NAME,
    DelegatedAuthenticator,
    NodeConsoleProxy,
    node_console_app,
)
from vmplane.apiserver.registry import Registry
from vmplane.apiserver.security import TlsFiles, ensure_self_signed, server_ssl_context
from vmplane.apiserver.streams import StreamBridge, add_stream_routes
from vmplane.apiserver.subresources import add_subresource_routes
from vmplane.apiserver.typed_kinds import typed_registry
from vmplane.apiserver.volume_subresources import add_volume_routes
from vmplane.client.base import ObjectClient
from vmplane.client.config import Kubeconfig
from vmplane.controller.kubevirt_status import KubeVirtStatusController
from vmplane.controller.manager import SIZING_RESOURCES, ControllerManager
from vmplane.controller.node_health import HealthConfig
from vmplane.controller.vm import cluster_configuration
from vmplane.demo import install_demo
from vmplane.host.paths import HostPaths
from vmplane.host.volumes import QemuVolumePreparer
from vmplane.hypervisor.base import Hypervisor, HypervisorError, OnChange
from vmplane.hypervisor.guestfs import GuestUser, default_guest_dir, guest_user, prepare_guest_dir
from vmplane.hypervisor.qemu import QemuHypervisor
from vmplane.hypervisor.qemu.machine_types import FALLBACK_MACHINE_TYPES, MachineTypesError, q35_machine_types
from vmplane.hypervisor.qemu.watchdog import FenceWatchdog
from vmplane.hypervisor.simulated import SIMULATED_CAPACITY, SimulatedHypervisor
from vmplane.metrics import FleetCollector, Metrics
from vmplane.reconcile.events import EventRecorder
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.scheduler.migration import MigrationController
from vmplane.scheduler.scheduler import Scheduler
from vmplane.store.base import JsonObject, Store
from vmplane.store.etcd import EtcdStore
from vmplane.store.etcd_client import EtcdConfig, parse_store_url

__all__ = [
    "APISERVER_USER",
    "ApiServerPlane",
    "ControlPlane",
    "Controllers",
    "InformerClusterView",
    "NodeHost",
    "PlaneOptions",
    "StoreOpener",
    "namespaced_resources",
    "report_controllers",
    "report_node",
    "store_opener",
]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PlaneOptions:
    """How ``vmplane serve`` runs guests on this host.

    ``guest_dir``: QEMU's machines, volumes and images (``hypervisor.guestfs`` has the layout and why it is
    not inside the 0700 data directory); default ``/var/lib/vmplane`` as root, else
    ``<data_dir>/guests``.
    ``host_disk_dirs``: where ``hostDisk`` paths may point (default ``<guest_dir>/hostdisks``).
    ``demo_guest``: a built test guest to install as an image, creating the demo VM (``--demo``).
    ``node_status_interval``: seconds between renewals of the Node's heartbeat.
    ``simulated_latency``: seconds each request to the simulated hypervisor takes (0 for scale
    benchmarks, where the control plane's own cost is what is measured).
    ``node_health``: when a silent node is unreachable, and when its agent fences its guests.
    ``window_poll_interval``: the longest maintenance windows go without looking at the clock.
    ``migration_address``: where this host's migration targets listen (an address the other nodes
    reach). ``shared_volumes_dir``: a volume directory all nodes share, holding the claims (see
    ``HostPaths``); without one, VMIs with claims cannot be live-migrated.
    """

    data_dir: Path
    hypervisor: Literal["qemu", "simulated"] = "qemu"
    node_name: str = "node01"
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    node_labels: dict[str, str] = field(default_factory=dict)
    node_taints: tuple[Taint, ...] = ()
    crash_backoff: float = 10.0
    node_status_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    node_health: HealthConfig = field(default_factory=HealthConfig)
    host_disk_dirs: tuple[Path, ...] = ()
    demo_guest: Path | None = None
    guest_dir: Path | None = None
    simulated_latency: float = 0.01
    window_poll_interval: float = 30.0
    migration_address: str = "127.0.0.1"
    shared_volumes_dir: Path | None = None

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


class InformerClusterView:
    """Admission's view of the cluster, read from the API server's own informers (kubevirts, VMIs).

    They list and watch through the in-process door, so the API needs no controller to admit a write.
    """

    def __init__(self, informers: SharedInformerFactory) -> None:
        self.kubevirts = informers.informer(KUBEVIRTS)
        self.vmis = informers.informer(VIRTUAL_MACHINE_INSTANCES)
        self.migration_objects = informers.informer(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS)
        # A dry run shows whether the VMI's node would still admit the placement (rollout.placement).
        self.nodes = informers.informer(NODES)
        # Instance types, preferences and their snapshots, which a VM's admission expands.
        self.sizing = {r: informers.informer(r) for r in (*SIZING_RESOURCES, CONTROLLER_REVISIONS)}

    def configuration(self) -> KubeVirtConfiguration:
        return cluster_configuration(self.kubevirts)

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return self.vmis.get(namespace, name)

    def lookup(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        informer = self.sizing.get(resource)
        return informer.get(namespace, name) if informer is not None else None

    def migrations(self, namespace: str) -> list[JsonObject]:
        return self.migration_objects.list(namespace)

    def node(self, name: str) -> JsonObject | None:
        return self.nodes.get("", name)


class _LateClusterView:
    """The cluster view before the door opens: the registry is built first, its informers later."""

    view: InformerClusterView | None = None

    def configuration(self) -> KubeVirtConfiguration:
        return self.view.configuration() if self.view is not None else KubeVirtConfiguration()

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return self.view.vmi(namespace, name) if self.view is not None else None

    def lookup(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        return self.view.lookup(resource, namespace, name) if self.view is not None else None

    def migrations(self, namespace: str) -> list[JsonObject]:
        return self.view.migrations(namespace) if self.view is not None else []

    def node(self, name: str) -> JsonObject | None:
        return self.view.node(name) if self.view is not None else None


#: The API server's own identity on its in-process door (Kubernetes' loopback client is the same).
APISERVER_USER = User(name="system:apiserver", groups=("system:masters", "system:authenticated"))
#: What the API server shows node agents when it reads a console: an identity with no rights.
CONSOLE_PROXY_USER = User(name=PROXY_USER_NAME, groups=("system:authenticated",))


def namespaced_resources(registry: Registry) -> tuple[str, ...]:
    """What a terminating namespace is emptied of: every namespaced kind the API serves."""
    return tuple(r.store_resource for r in registry if r.namespaced)


class ApiServerPlane:
    """What runs beside the API alone (``vmplane apiserver``): its typed kinds and their admission,
    the subresource routes, and the informers admission reads."""

    def __init__(
        self,
        options: PlaneOptions,
        *,
        proxy_consoles: bool = False,
        console: ConsoleSource | None = None,
        streams: QemuGuestStreams | None = None,
        agents: GuestAgentQueries | None = None,
    ) -> None:
        """``proxy_consoles``: this process keeps no guests; read consoles (and ask guest agents) on
        the VMIs' nodes. ``agents``: this host's guest agents otherwise.
        ``console``: where console logs are read otherwise (default: QEMU's, none for simulated guests).
        ``streams``: this host's guests' serial ports, VNC displays and ports (the interactive console,
        ``vnc`` and ``portforward``); None where the guests run elsewhere."""
        self._options = options
        self._cluster = _LateClusterView()
        self._proxy = NodeConsoleProxy() if proxy_consoles else None
        self.registry: Registry = typed_registry(
            self._cluster,
            allowed_host_dirs=tuple(str(d) for d in options.allowed_host_dirs),
            machine_types=_machine_types(),
        )
        local = options.hypervisor == "qemu" and not proxy_consoles
        self._console = console or (QemuConsoleLogs(options.machines_dir) if local else None)
        self._streams = streams
        self._agents = agents
        self._informers: SharedInformerFactory | None = None

    def add_routes(self, app: web.Application, ctx: ApiContext) -> None:
        """The ``subresources.kubevirt.io`` routes."""
        add_volume_routes(app, ctx)  # before the {action} routes, which 404 actions they do not know
        add_subresource_routes(app, ctx, self._cluster)
        bridge = StreamBridge(ctx, self._streams) if self._streams is not None else None
        add_console_routes(app, ctx, self._console, self._proxy, bridge)
        if bridge is not None:
            add_stream_routes(app, ctx, bridge)
        agents = self._agents
        if agents is None and self._proxy is not None:
            agents = _ProxiedGuestAgents(self._proxy, ctx.store)
        add_guest_operation_routes(app, ctx, agents)

    def instrument(self, metrics: Metrics) -> None:
        """Nothing beyond the API's request metrics (``create_app``'s): no queues run here."""
        del metrics

    async def start(self, door: InProcessDoor) -> None:
        """List and watch what admission reads, through the door."""
        if self._proxy is not None:
            self._proxy.token = door.mint(CONSOLE_PROXY_USER)
        # This process caches every object admission reads: components of it select from those.
        self._informers = SharedInformerFactory(door.client(APISERVER_USER), select_locally=True)
        self._cluster.view = InformerClusterView(self._informers)
        self._informers.start()
        await self._informers.wait_synced()

    @property
    def informers(self) -> SharedInformerFactory:
        """The informers admission reads (once started), for components of the same process to share."""
        if self._informers is None:
            raise RuntimeError("the API server plane is not started")
        return self._informers

    async def stop(self) -> None:
        if self._informers is not None:
            try:
                await self._informers.stop()
            finally:
                await self._informers.client.close()

    async def run(self, door: InProcessDoor) -> None:
        await self.start(door)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


class Controllers:
    """The VM and namespace controllers, the garbage collector, the scheduler and the KubeVirt status
    controller (``vmplane controller``), on one client and one set of shared informers."""

    def __init__(
        self,
        client: ObjectClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        crash_backoff: float = 10.0,
        window_poll_interval: float = 30.0,
        node_health: HealthConfig | None = None,
        namespaced: tuple[str, ...],
        informers: SharedInformerFactory | None = None,
    ) -> None:
        """``node_health``: when a silent node is unreachable and its VMIs may run elsewhere.
        ``informers``: caches another component of this process owns and shares (the controllers
        then read through them and write through ``client``); default their own, on ``client``."""
        self.client = client
        self._owns_informers = informers is None
        self.informers = informers or SharedInformerFactory(client)
        self.manager = ControllerManager(
            client=client,
            events=EventRecorder(client, component="virt-controller", clock=clock),
            clock=clock,
            crash_backoff=crash_backoff,
            window_poll_interval=window_poll_interval,
            namespaced_resources=namespaced,
            node_health=node_health or HealthConfig(),
            informers=self.informers,
        )
        self.scheduler = Scheduler(client=client, clock=clock, informers=self.informers)
        self.migrations = MigrationController(
            client=client,
            events=EventRecorder(client, component="virt-controller", clock=clock),
            clock=clock,
            informers=self.informers,
        )
        self.kubevirt_status = KubeVirtStatusController(client=client, clock=clock, informers=self.informers)

    async def start(self) -> None:
        await self.manager.start()
        await self.scheduler.start()
        await self.migrations.start()
        await self.kubevirt_status.start()

    async def stop(self) -> None:
        await self.kubevirt_status.stop()
        await self.migrations.stop()
        await self.scheduler.stop()
        await self.manager.stop()
        if self._owns_informers:
            await self.informers.stop()


def report_controllers(metrics: Metrics, controllers: Controllers) -> None:
    """Every controller's work queue and the fleet's per-VM series, to ``metrics``."""
    manager = controllers.manager
    for controller in (
        manager.controller,
        manager.namespace_controller,
        manager.garbage_collector.controller,
        controllers.scheduler.controller,
        controllers.migrations.controller,
        controllers.kubevirt_status.controller,
    ):
        controller.queue.observer = metrics.queue(controller.name)
    metrics.register(FleetCollector(vms=manager.vms.list, vmis=manager.vmis.list))


def report_node(metrics: Metrics, host: NodeHost) -> None:
    """The node agent's work queue and its hotplugs, to ``metrics``."""
    host.agent.controller.queue.observer = metrics.queue(host.agent.controller.name)
    host.agent.in_place.on_hotplug = metrics.hotplug


@dataclass(frozen=True, slots=True)
class ConsoleServing:
    """Where a separate agent serves its guests' consoles to the API server, and how it checks who
    asks (``apiserver.node_console``): the API server of ``kubeconfig`` vouches for its proxy token."""

    kubeconfig: Kubeconfig
    listen: ListenAddress = field(default_factory=lambda: ListenAddress("127.0.0.1", 0))


class NodeHost:
    """One host's node agent and its hypervisor driver (``vmplane agent``), and, with ``console``
    and QEMU, the HTTPS server the API server reads its guests' consoles from."""

    def __init__(
        self,
        client: ObjectClient,
        options: PlaneOptions,
        *,
        clock: Callable[[], datetime] = utc_now,
        hypervisor: Callable[[OnChange], Hypervisor] | None = None,
        console: ConsoleServing | None = None,
        fence_timeout: float | None = None,
        fence_watchdog: bool = False,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        """With the QEMU driver this resolves who QEMU runs as and prepares the guest directory, raising
        ``guestfs.GuestSetupError`` (one line saying what to do) if either is impossible.
        ``fence_timeout``: the agent's own (``vmplane agent``, which knows no grace period); default
        the one of ``options.node_health``. ``fence_watchdog`` (QEMU only): a detached watchdog stops the
        guests when this process stops renewing, even if it is killed (``hypervisor.qemu.watchdog``);
        ``vmplane serve`` has none, as its controllers die with it and fail nothing over.
        ``informers``: caches of this process to read from (``vmplane serve``); default the agent's own."""
        self._options = options
        self.client = client
        shared = options.shared_volumes_dir.absolute() if options.shared_volumes_dir is not None else None
        paths = HostPaths(options.guest_root, host_disk_dirs=options.allowed_host_dirs, shared_volumes=shared)
        qemu = options.hypervisor == "qemu"
        self._user: GuestUser | None = None
        if qemu:
            self._user = guest_user(euid=os.geteuid())
            prepare_guest_dir(options.guest_root, self._user)
        facts = host_facts(runtime_version=qemu_runtime_version() if qemu else f"simulated://{__version__}")
        self._console = console if qemu else None
        self._console_socket: socket.socket | None = None
        self._console_tls: TlsFiles | None = None
        self._console_runner: web.AppRunner | None = None
        if self._console is not None:
            facts = self._bind_console(self._console, facts)
        timeout = options.node_health.fence_timeout if fence_timeout is None else fence_timeout
        self.agent = NodeAgent(
            client=client,
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
            node_taints=options.node_taints,
            heartbeat_interval=options.node_status_interval,
            capacity=None if qemu else SIMULATED_CAPACITY,
            fence_timeout=timeout,
            host=facts,
            migration_address=options.migration_address,
            shared_claims=shared is not None,
            informers=informers,
        )
        self._watchdog = (
            FenceWatchdog(guest_root=options.guest_root, machines_dir=options.machines_dir, timeout=timeout)
            if qemu and fence_watchdog
            else None
        )
        if self._watchdog is not None:
            self.agent.on_renewed = self._watchdog.beat

    def _bind_console(self, console: ConsoleServing, facts: HostFacts) -> HostFacts:
        """Bind the console port now (the Node must say where it is) and make its certificate."""
        host = console.listen.host
        self._console_socket = socket.create_server((host, console.listen.port))
        port = int(self._console_socket.getsockname()[1])
        self._console_tls = ensure_self_signed(self._options.data_dir / "console", host)
        der = ssl.PEM_cert_to_DER_cert(self._console_tls.cert.read_text())
        shown = f"[{host}]" if ":" in host else host
        return replace(
            facts,
            console_endpoint=f"https://{shown}:{port}",
            console_cert_sha256=hashlib.sha256(der).hexdigest(),
            console_port=port,
        )

    async def _vmi(self, namespace: str, name: str) -> JsonObject | None:
        return self.agent.vmis.get(namespace, name)

    async def _agent_query(self, vmi: JsonObject, what: str) -> JsonObject:
        driver = self.agent.hypervisor
        if not isinstance(driver, QemuHypervisor):
            raise OSError("this node's hypervisor has no guest agents")
        return await _ask_guest_agent(driver, vmi, what)

    async def start(self) -> None:
        if self._console is not None and self._console_socket is not None and self._console_tls is not None:
            app = node_console_app(
                respond=ConsoleLog(QemuConsoleLogs(self._options.machines_dir), self._vmi).respond,
                lookup=self._vmi,
                agent_query=self._agent_query,
                allowed=DelegatedAuthenticator(
                    api_server=self._console.kubeconfig.server, ca_pem=self._console.kubeconfig.ca_pem
                ),
            )
            self._console_runner = web.AppRunner(app, access_log=None)
            await self._console_runner.setup()
            site = web.SockSite(
                self._console_runner, self._console_socket, ssl_context=server_ssl_context(self._console_tls)
            )
            await site.start()
        if self._watchdog is not None:
            self._watchdog.start()
        await self.agent.start()

    async def stop(self) -> None:
        await self.agent.stop()
        if self._console_runner is not None:
            await self._console_runner.cleanup()

    def _hypervisor(self, on_change: OnChange) -> Hypervisor:
        if self._options.hypervisor == "simulated":
            return SimulatedHypervisor(on_change=on_change, latency=self._options.simulated_latency)
        return QemuHypervisor(
            base_dir=self._options.machines_dir,
            accel=self._options.accel,
            on_change=on_change,
            user=self._user,
        )


class _LateForwarder:
    """The port forwards of the QEMU driver ``vmplane serve`` builds once the API is up: its routes
    exist before its node agent does."""

    hypervisor: QemuHypervisor | None = None

    def _driver(self) -> QemuHypervisor:
        if self.hypervisor is None:
            raise OSError("this host's node agent is not running yet")
        return self.hypervisor

    async def forward_port(self, name: str, port: int) -> tuple[str, int]:
        return await self._driver().forward_port(name, port)

    async def unforward_port(self, name: str, netdev: str, host_port: int) -> None:
        await self._driver().unforward_port(name, netdev, host_port)

    async def guest_agent_query(self, vmi: JsonObject, what: str) -> JsonObject:
        return await _ask_guest_agent(self._driver(), vmi, what)


async def _ask_guest_agent(driver: QemuHypervisor, vmi: JsonObject, what: str) -> JsonObject:
    """The guest agent of ``vmi``'s machine on this host (OSError when it does not answer)."""
    meta = vmi["metadata"]
    try:
        return await driver.guest_agent_query(machine_name(meta["namespace"], meta["name"]), what)
    except HypervisorError as err:
        raise OSError(str(err)) from err


@dataclass(frozen=True, slots=True)
class _ProxiedGuestAgents:
    """Guest agents asked on the VMI's node, through the node agent's console server."""

    proxy: NodeConsoleProxy
    store: Store

    async def guest_agent_query(self, vmi: JsonObject, what: str) -> JsonObject:
        return await self.proxy.guest_agent_query(self.store, vmi, what)


class ControlPlane:
    """``vmplane serve``: the API's kinds, the controllers and this host's node agent in one process,
    each component a client of the API through the in-process door under its own identity."""

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

        ``store`` is not read here: every component goes through the API. It stays in the signature
        that ``run_server`` calls, which owns the store.
        """
        del store
        self._options = options
        self._clock = clock
        self._hypervisor = hypervisor
        self._metrics: Metrics | None = None
        self._forwarder = _LateForwarder()
        qemu = options.hypervisor == "qemu"
        streams = QemuGuestStreams(options.machines_dir, self._forwarder) if qemu else None
        self.api = ApiServerPlane(
            options, console=console, streams=streams, agents=self._forwarder if qemu else None
        )
        self.registry = self.api.registry
        # Built before ``run`` (the QEMU guest directory is checked at once, before the API listens).
        self._host_check = options.hypervisor == "qemu"
        if self._host_check:
            prepare_guest_dir(options.guest_root, guest_user(euid=os.geteuid()))

    def add_routes(self, app: web.Application, ctx: ApiContext) -> None:
        self.api.add_routes(app, ctx)

    def instrument(self, metrics: Metrics) -> None:
        """Report every work queue, the agent's hotplugs and the fleet to ``metrics`` (once ``run``
        has built them)."""
        self._metrics = metrics

    async def run(self, door: InProcessDoor) -> None:
        """Run the controllers, the scheduler and the node agent until cancelled."""
        # Every stop and close runs even when one before it fails or is cancelled again: a client left
        # open leaks its connection to the door.
        async with contextlib.AsyncExitStack() as stack:
            await self.api.start(door)
            stack.push_async_callback(self.api.stop)
            controllers = Controllers(
                door.client(user_for(Role.CONTROLLERS)),
                clock=self._clock,
                crash_backoff=self._options.crash_backoff,
                window_poll_interval=self._options.window_poll_interval,
                node_health=self._options.node_health,
                namespaced=namespaced_resources(self.registry),
                # One cache of each resource per process: the controllers read admission's.
                informers=self.api.informers,
            )
            stack.push_async_callback(controllers.client.close)
            host = NodeHost(
                door.client(node_user(self._options.node_name)),
                self._options,
                clock=self._clock,
                hypervisor=self._hypervisor,
                informers=self.api.informers,
            )
            stack.push_async_callback(host.client.close)
            if isinstance(host.agent.hypervisor, QemuHypervisor):
                self._forwarder.hypervisor = host.agent.hypervisor
            if self._metrics is not None:
                report_controllers(self._metrics, controllers)
                report_node(self._metrics, host)
            stack.push_async_callback(controllers.stop)
            await controllers.start()
            stack.push_async_callback(host.stop)
            await host.start()
            if self._options.demo_guest is not None:
                await install_demo(
                    controllers.client,
                    paths=HostPaths(self._options.guest_root),
                    guest_dir=self._options.demo_guest,
                )
            await asyncio.Event().wait()


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
