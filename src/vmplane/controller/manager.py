"""Wires the controllers to their informers: which changes enqueue which keys.

The VM controller, the namespace controller, the node lifecycle controller, the garbage collector
and the restart-approval and maintenance-window controllers share the informers of the kinds they
all read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vmplane.api.events import EventSink
from vmplane.api.resources import (
    CLUSTER_INSTANCETYPES,
    CLUSTER_PREFERENCES,
    CONTROLLER_REVISIONS,
    EVENTS,
    INSTANCETYPES,
    KUBEVIRTS,
    MAINTENANCE_WINDOWS,
    NAMESPACES,
    NODES,
    PREFERENCES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
)
from vmplane.client.base import ObjectClient
from vmplane.controller.approval import ApprovalReconciler
from vmplane.controller.evacuation import EvacuationController
from vmplane.controller.garbage_collector import GarbageCollector
from vmplane.controller.maintenance import MaintenanceReconciler
from vmplane.controller.namespace import NamespaceReconciler
from vmplane.controller.node_health import HealthConfig
from vmplane.controller.node_lifecycle import NodeLifecycleController
from vmplane.controller.placement_migration import PlacementMigrationReconciler
from vmplane.controller.vm import VMReconciler
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Controller
from vmplane.store.base import JsonObject

#: The instance types and preferences VMs refer to (cached for the VM controller and admission).
SIZING_RESOURCES = (INSTANCETYPES, CLUSTER_INSTANCETYPES, PREFERENCES, CLUSTER_PREFERENCES)

__all__ = ["ControllerManager"]


#: What a terminating namespace is emptied of when the API does not say (``namespaced_resources``).
DEFAULT_NAMESPACED = (VIRTUAL_MACHINES, VIRTUAL_MACHINE_INSTANCES, CONTROLLER_REVISIONS, EVENTS, KUBEVIRTS)


class ControllerManager:
    """The controllers and the informers feeding them; ``start``/``stop`` run them in the current loop.

    ``namespaced_resources``: the store resources of every namespaced kind the API serves, which the
    namespace controller deletes from a terminating namespace. ``window_poll_interval``: the longest
    the restart-approval and maintenance-window controllers go without looking at the clock again.
    """

    def __init__(
        self,
        *,
        client: ObjectClient,
        events: EventSink,
        clock: Callable[[], datetime],
        workers: int = 2,
        crash_backoff: float = 10.0,
        namespaced_resources: tuple[str, ...] = DEFAULT_NAMESPACED,
        window_poll_interval: float = 30.0,
        node_health: HealthConfig | None = None,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        informers = informers or SharedInformerFactory(client)
        self.vms = informers.informer(VIRTUAL_MACHINES)
        self.vmis = informers.informer(VIRTUAL_MACHINE_INSTANCES)
        self.kubevirts = informers.informer(KUBEVIRTS)
        self.namespaces = informers.informer(NAMESPACES)
        self.revisions = informers.informer(CONTROLLER_REVISIONS)
        self.events = informers.informer(EVENTS)
        self.nodes = informers.informer(NODES)
        self.windows = informers.informer(MAINTENANCE_WINDOWS)
        # The placement-migration controller's: one migration at a time per VMI.
        self.migrations = informers.informer(VIRTUAL_MACHINE_INSTANCE_MIGRATIONS)
        self.sizing = {resource: informers.informer(resource) for resource in SIZING_RESOURCES}
        reconciler = VMReconciler(
            client=client,
            vms=self.vms,
            vmis=self.vmis,
            kubevirts=self.kubevirts,
            nodes=self.nodes,
            events=events,
            clock=clock,
            crash_backoff=crash_backoff,
            lookup=self.lookup,
        )
        self.controller: Controller[Key] = Controller(
            name="vm-controller", reconciler=reconciler, workers=workers
        )
        self.vms.on_change(self._enqueue)
        # A VMI has its VM's name, so a VMI change enqueues the VM of the same key.
        self.vmis.on_change(self._enqueue)
        self.kubevirts.on_change(self._enqueue_every_vm)
        # A node's room (and its readiness) bears on the rollout of the VMs running there.
        self.nodes.on_change(self._enqueue_vms_on_node)
        # A VM waiting for its instance type or preference to exist starts when it appears.
        for informer in self.sizing.values():
            informer.on_change(self._enqueue_every_vm)
        self.namespace_controller: Controller[Key] = Controller(
            name="namespace-controller",
            reconciler=NamespaceReconciler(
                client=client, namespaces=self.namespaces, resources=namespaced_resources, clock=clock
            ),
            workers=1,
        )
        self.namespaces.on_change(self.namespace_controller.queue.add)
        self.node_lifecycle = NodeLifecycleController(
            client=client, vmis=self.vmis, events=events, clock=clock, config=node_health, informers=informers
        )
        # Creates the migrations that empty a node carrying the drain taint (the scheduler's
        # migration controller moves them).
        self.evacuation = EvacuationController(client=client, events=events, informers=informers)
        self._wire_placement(client, events, clock)
        self._wire_restarts(client, events, clock, workers, window_poll_interval)
        self.garbage_collector = GarbageCollector(
            client=client,
            informers={
                VIRTUAL_MACHINES: self.vms,
                VIRTUAL_MACHINE_INSTANCES: self.vmis,
                KUBEVIRTS: self.kubevirts,
                NAMESPACES: self.namespaces,
                CONTROLLER_REVISIONS: self.revisions,
                EVENTS: self.events,
            },
        )

    def _wire_restarts(
        self,
        client: ObjectClient,
        events: EventSink,
        clock: Callable[[], datetime],
        workers: int,
        poll: float,
    ) -> None:
        """Restart approval per VM and maintenance windows: both re-read on any VM, VMI or window change."""
        approval = ApprovalReconciler(
            client=client,
            vms=self.vms,
            vmis=self.vmis,
            namespaces=self.namespaces,
            windows=self.windows,
            events=events,
            clock=clock,
            poll_interval=poll,
        )
        self.approval_controller: Controller[Key] = Controller(
            name="restart-approval-controller", reconciler=approval, workers=workers
        )
        self.maintenance = MaintenanceReconciler(
            client=client,
            windows=self.windows,
            vms=self.vms,
            vmis=self.vmis,
            namespaces=self.namespaces,
            events=events,
            clock=clock,
            poll_interval=poll,
        )
        # One worker: a window's batches are decided one step at a time.
        self.window_controller: Controller[Key] = Controller(
            name="maintenance-window-controller", reconciler=self.maintenance, workers=1
        )
        self.vms.on_change(self.approval_controller.queue.add)
        self.vmis.on_change(self.approval_controller.queue.add)
        self.windows.on_change(self._window_changed)
        for informer in (self.vms, self.vmis):
            informer.on_change(lambda _key: self._enqueue_every_window())

    def _wire_placement(self, client: ObjectClient, events: EventSink, clock: Callable[[], datetime]) -> None:
        """Placement migrations per VM: re-read when the VM, its VMI, its node, the KubeVirt object
        (the opt-in) or one of its VMI's migrations (one at a time) changes."""
        reconciler = PlacementMigrationReconciler(
            client=client,
            vms=self.vms,
            vmis=self.vmis,
            nodes=self.nodes,
            kubevirts=self.kubevirts,
            migrations=self.migrations,
            events=events,
            clock=clock,
        )
        # One worker: two never decide for the same VMI at once (each reads the migrations first).
        self.placement_controller: Controller[Key] = Controller(
            name="placement-migration-controller", reconciler=reconciler, workers=1
        )
        queue = self.placement_controller.queue
        self.vms.on_change(queue.add)
        self.vmis.on_change(queue.add)
        self.kubevirts.on_change(lambda key: self._enqueue_every_vm(key, queue=queue.add))
        self.nodes.on_change(lambda key: self._enqueue_vms_on_node(key, queue=queue.add))
        migrations = self.migrations

        def migration_changed(key: Key) -> None:
            # A deleted migration is no longer cached: nothing waits on it then.
            migration = migrations.get(*key)
            vmi_name = ((migration or {}).get("spec") or {}).get("vmiName")
            if isinstance(vmi_name, str) and vmi_name:
                queue.add((key[0], vmi_name))

        migrations.on_change(migration_changed)

    def _window_changed(self, key: Key) -> None:
        self.window_controller.queue.add(key)
        for vm in self.vms.list():
            meta = vm["metadata"]
            self.approval_controller.queue.add((meta.get("namespace", ""), meta["name"]))

    def _enqueue_every_window(self) -> None:
        for key in self.maintenance.window_keys():
            self.window_controller.queue.add(key)

    def _enqueue(self, key: Key) -> None:
        self.controller.queue.add(key)

    def _enqueue_every_vm(self, _key: Key, *, queue: Callable[[Key], None] | None = None) -> None:
        add = queue or self.controller.queue.add
        for vm in self.vms.list():
            meta = vm["metadata"]
            add((meta.get("namespace", ""), meta["name"]))

    def _enqueue_vms_on_node(self, key: Key, *, queue: Callable[[Key], None] | None = None) -> None:
        add = queue or self.controller.queue.add
        for vmi in self.vmis.list():
            if (vmi.get("status") or {}).get("nodeName") == key[1]:
                meta = vmi["metadata"]
                add((meta.get("namespace", ""), meta["name"]))

    def lookup(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        """An instance type, preference or ControllerRevision from the caches (None if not cached)."""
        informer = self.revisions if resource == CONTROLLER_REVISIONS else self.sizing.get(resource)
        return informer.get(namespace, name) if informer is not None else None

    def _informers(self) -> tuple[Informer, ...]:
        return (
            *self.sizing.values(),
            self.kubevirts,
            self.nodes,
            self.vmis,
            self.vms,
            self.namespaces,
            self.revisions,
            self.events,
            self.windows,
            self.migrations,
            *self.node_lifecycle.informers(),
            *self.evacuation.informers(),
        )

    async def start(self) -> None:
        """Fill the caches, then start reconciling."""
        for informer in self._informers():
            informer.start()
        for informer in self._informers():
            await informer.wait_synced()
        self.controller.start()
        self.namespace_controller.start()
        self.approval_controller.start()
        self.window_controller.start()
        self.garbage_collector.controller.start()
        self.node_lifecycle.controller.start()
        self.evacuation.controller.start()
        self.placement_controller.start()

    async def stop(self) -> None:
        """Stop reconciling and watching."""
        await self.placement_controller.stop()
        await self.evacuation.controller.stop()
        await self.node_lifecycle.controller.stop()
        await self.garbage_collector.controller.stop()
        await self.window_controller.stop()
        await self.approval_controller.stop()
        await self.namespace_controller.stop()
        await self.controller.stop()
        for informer in reversed(self._informers()):
            await informer.stop()
