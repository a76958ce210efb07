"""The node agent: runs this node's VMIs through a Hypervisor and reports only what it observes.

Level-triggered, as every vmplane loop: a VMI change and a hypervisor ``on_change`` both just enqueue
the VMI's key; a reconcile re-reads the VMI, ``observe()``-s its machine and translates its spec,
asks the pure ``agent.plan.decide`` for an ``AgentPlan`` (boot, sync with the in-place operations
``hotplug.operations`` lists, finalize a deleted VMI, discard an ended machine, report a status), and
then ``_act``-s on it: the one place that sequences the hypervisor calls and the API writes (the
hotplugs themselves are ``agent.inplace``'s).

A failed operation is recorded against its VMI spec path in the VMI status (``rollout.failures``: the
agent writes it, the agent and the VM planner read it through one decoder) and not retried until the
spec and the guest agree again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import assert_never

from vmplane.agent.fencing import DEFAULT_FENCE_TIMEOUT, Fence
from vmplane.agent.inplace import InPlaceOperations, VolumePreparer
from vmplane.agent.lifecycle import LifecyclePlan, lifecycle_plan, perform
from vmplane.agent.machine import machine_name, machine_spec, vmi_key_of
from vmplane.agent.migration import MigrationActor
from vmplane.agent.migration_plan import migration_step
from vmplane.agent.node import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_LEASE_INTERVAL,
    HostFacts,
    NodeRegistration,
    host_facts,
    node_object,
)
from vmplane.agent.plan import (
    DEFAULT_GRACE_PERIOD,
    AgentPlan,
    Boot,
    Discard,
    Finalize,
    Ignore,
    Report,
    Sync,
    decide,
    decide_sync,
)
from vmplane.agent.status import machine_status, phase_status
from vmplane.api.events import EventSink
from vmplane.api.guest_ops import done_annotations
from vmplane.api.migratable import MigrationSupport
from vmplane.api.ownership import MACHINE_FINALIZER  # held on every VMI until its machine is stopped
from vmplane.api.resources import VIRTUAL_MACHINE_INSTANCES
from vmplane.api.scheduling import Taint
from vmplane.api.timestamps import timestamp
from vmplane.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus, VMIPhase
from vmplane.client.base import ObjectClient
from vmplane.host.paths import MachineSpecError, VolumeResolver
from vmplane.hypervisor.base import (
    Hypervisor,
    HypervisorError,
    MachineNotFoundError,
    MachineSpec,
    MachineState,
    ObservedMachine,
    OnChange,
)
from vmplane.reconcile.events import EventRecorder
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import JsonObject, NotFoundError

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_IN_FLIGHT_GRACE", "NodeAgent", "VolumePreparer"]

log = logging.getLogger(__name__)

#: Seconds hotplugs may take before the VMI reports them in flight (``HotVCPUChange`` True, ...):
#: shorter ones are reported once, done.
DEFAULT_IN_FLIGHT_GRACE = 1.0


def _ignore_renewal(sent: float) -> None:
    return None


_LIVE = (MachineState.STARTING, MachineState.RUNNING)


def _migrating_from(vmi: VirtualMachineInstance, node: str) -> bool:
    state = vmi.status.migration_state if vmi.status is not None else None
    return state is not None and state.source_node == node and not (state.completed or state.failed)


def _held(
    vmi: VirtualMachineInstance | None, raw: JsonObject | None
) -> tuple[VirtualMachineInstance, JsonObject]:
    """The VMI a plan acts on: only ``Discard`` and ``Ignore`` are decided without one."""
    if vmi is None or raw is None:
        raise AssertionError("a plan that acts on a VMI was decided without one")
    return vmi, raw


class NodeAgent:
    """Runs the VMIs whose ``status.nodeName`` is ``node_name``; ``start``/``stop`` in the current loop.

    ``hypervisor`` builds the driver from the callback it must call on every change (the agent's
    queue), so the composition root need not wire the two by hand. ``resolver`` maps volumes to files
    (``paths`` is the same, under the name ``app.py`` used first). ``events`` defaults to a
    ``virt-handler`` EventRecorder on ``client``. ``unplug_timeout`` bounds each disk and NIC unplug.
    ``host`` is what the Node reports of this host (read from it when None); ``capacity`` overrides
    its CPUs and memory; the Node's heartbeat is renewed every ``heartbeat_interval`` seconds, and
    the guests are stopped when the Lease has not been renewed for ``fence_timeout`` seconds
    (``agent.fencing``).
    """

    def __init__(
        self,
        *,
        client: ObjectClient,
        hypervisor: Callable[[OnChange], Hypervisor],
        node_name: str,
        clock: Callable[[], datetime],
        resolver: VolumeResolver | None = None,
        paths: VolumeResolver | None = None,
        events: EventSink | None = None,
        preparer: VolumePreparer | None = None,
        node_labels: Mapping[str, str] | None = None,
        node_taints: Sequence[Taint | Mapping[str, str]] = (),
        capacity: Mapping[str, str] | None = None,
        host: HostFacts | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        unplug_timeout: float = 30.0,
        workers: int = 4,
        fence_timeout: float = DEFAULT_FENCE_TIMEOUT,
        informers: SharedInformerFactory | None = None,
        migration_address: str = "127.0.0.1",
        shared_claims: bool = False,
        in_flight_grace: float = DEFAULT_IN_FLIGHT_GRACE,
    ) -> None:
        chosen = resolver if resolver is not None else paths
        if chosen is None:
            raise TypeError("NodeAgent needs a resolver")
        self._resolver: VolumeResolver = chosen
        self._client = client
        self._node = node_name
        self._clock = clock
        self._events: EventSink = events or EventRecorder(client, component="virt-handler", clock=clock)
        self._preparer = preparer
        self._labels = dict(node_labels or {})
        self._taints = [t if isinstance(t, Taint) else Taint.from_wire(t) for t in node_taints]
        self._capacity = capacity
        #: Told when each successful Lease renewal was sent (the QEMU host's fence watchdog).
        self.on_renewed: Callable[[float], None] = _ignore_renewal
        informers = informers or SharedInformerFactory(client)
        # Only this node's VMIs, as a kubelet watches only its pods.
        self.vmis = informers.selected(
            VIRTUAL_MACHINE_INSTANCES, field_selector=f"status.nodeName={node_name}"
        )
        self.controller: Controller[Key] = Controller(name="node-agent", reconciler=self, workers=workers)
        self.hypervisor = hypervisor(self._machine_changed)
        self.in_place = InPlaceOperations(
            hypervisor=self.hypervisor,
            events=self._events,
            preparer=preparer,
            write=self._write,
            unplug_timeout=unplug_timeout,
            in_flight_grace=in_flight_grace,
        )
        self.vmis.on_change(self._vmi_changed)
        # VMIs migrating to this node, bound to their source until the guest runs here.
        self.incoming = informers.selected(
            VIRTUAL_MACHINE_INSTANCES, field_selector=f"status.migrationState.targetNode={node_name}"
        )
        self.incoming.on_change(self.controller.queue.add)
        # Both drivers copy node-local disks while migrating; claims move only on shared storage.
        self._support = MigrationSupport(copies_local_disks=True, shared_claims=shared_claims)
        self.migrations = MigrationActor(
            client=client,
            hypervisor=self.hypervisor,
            events=self._events,
            preparer=preparer,
            listen_host=migration_address,
            now=self._now,
        )
        facts = host if host is not None else host_facts(runtime_version="unknown")
        self.registration = NodeRegistration(
            client=client,
            informers=informers,
            name=node_name,
            build=lambda: node_object(
                name=self._node,
                labels=self._labels,
                taints=self._taints,
                facts=facts,
                capacity=self._capacity,
                now=self._now(),
            ),
            heartbeat_interval=heartbeat_interval,
            clock=clock,
            on_renewed=self._renewed,
            # At least three renewals per fence timeout, so one slow write never fences a live node.
            lease_interval=min(DEFAULT_LEASE_INTERVAL, fence_timeout / 3),
        )
        self.fence = Fence(timeout=fence_timeout, stop_guests=self._stop_guests, resume=self._resume)

    def _renewed(self, sent: float) -> None:
        self.fence.renewed(sent)
        self.on_renewed(sent)

    def _machine_changed(self, machine: str) -> None:
        self.controller.queue.add(vmi_key_of(machine))

    def _vmi_changed(self, key: Key) -> None:
        # A deleted VMI may leave a machine behind; any other is ours only once bound to this node.
        obj = self.vmis.get(*key)
        if obj is None or (obj.get("status") or {}).get("nodeName") == self._node:
            self.controller.queue.add(key)

    async def start(self) -> None:
        """Register the Node, adopt the machines an earlier agent left, then start reconciling.

        Adoption comes first: a Running VMI reconciled before its machine is adopted would look lost.
        """
        self.fence.start()
        await self.registration.start()
        for machine in await self.hypervisor.adopt():
            self.controller.queue.add(vmi_key_of(machine))
        self.vmis.start()
        self.incoming.start()
        await self.vmis.wait_synced()
        await self.incoming.wait_synced()
        self.controller.start()

    async def stop(self) -> None:
        """Stop reconciling and disconnect; the guests keep running for the next agent to adopt."""
        await self.controller.stop()
        await self.registration.stop()
        await self.fence.stop()
        await self.vmis.stop()
        await self.incoming.stop()
        await self.hypervisor.close()

    def _bound_keys(self) -> list[Key]:
        return [
            (v["metadata"].get("namespace", ""), v["metadata"]["name"])
            for v in self.vmis.list()
            if (v.get("status") or {}).get("nodeName") == self._node
        ]

    async def _stop_guests(self) -> None:
        """Fencing: stop every guest of this node at once (no grace: the node is presumed lost)."""
        for key in self._bound_keys():
            machine = machine_name(*key)
            observed = await self._observe(machine)
            if observed is not None and observed.state in _LIVE:
                with contextlib.suppress(HypervisorError):
                    await self.hypervisor.stop(machine, grace_period=0)

    def _resume(self) -> None:
        for key in self._bound_keys():
            self.controller.queue.add(key)

    def _now(self) -> str:
        return timestamp(self._clock())

    # -- the reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        """Read the VMI, its machine and the machine its spec asks for; decide; act."""
        if self.fence.fenced:
            return Result()  # no boots, no writes: renewing resumes every VMI of this node
        namespace, name = key
        machine = machine_name(namespace, name)
        try:
            raw: JsonObject | None = await self._client.get(VIRTUAL_MACHINE_INSTANCES, namespace, name)
        except NotFoundError:
            raw = None
        vmi = VirtualMachineInstance.model_validate(raw) if raw is not None else None
        observed = await self._observe(machine)
        desired = self._desired(vmi) if vmi is not None else MachineSpecError("no VMI")
        progress = None
        if vmi is not None and raw is not None and observed is not None and _migrating_from(vmi, self._node):
            progress = await self.hypervisor.migration_progress(machine)
        step = migration_step(vmi, observed, desired, node=self._node, progress=progress, now=self._now())
        if step is not None:
            return await self.migrations.act(step, *_held(vmi, raw), machine)
        plan = decide(vmi, observed, desired, node=self._node, now=self._now(), support=self._support)
        await self._act(plan, vmi, raw, machine)
        return Result()

    async def _act(
        self, plan: AgentPlan, vmi: VirtualMachineInstance | None, raw: JsonObject | None, machine: str
    ) -> None:
        """Carry out ``plan``: the only place the agent's decisions touch the hypervisor and the API."""
        match plan:
            case Ignore():
                return
            case Discard():
                await self._discard(machine)
            case Finalize(grace_period=grace):
                await self._finalize(*_held(vmi, raw), machine, grace_period=grace)
            case Boot(spec=spec):
                await self._boot(*_held(vmi, raw), machine, spec)
            case Report(status=status):
                await self._write(*_held(vmi, raw), status)
            case Sync():
                await self._sync(*_held(vmi, raw), machine, plan)
            case _:
                assert_never(plan)

    async def _observe(self, machine: str) -> ObservedMachine | None:
        try:
            return await self.hypervisor.observe(machine)
        except MachineNotFoundError:
            return None

    def _desired(self, vmi: VirtualMachineInstance) -> MachineSpec | MachineSpecError:
        try:
            return machine_spec(vmi, resolver=self._resolver)
        except MachineSpecError as err:
            return err

    async def _boot(
        self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str, spec: MachineSpec
    ) -> None:
        try:
            if self._preparer is not None:
                await self._preparer.prepare(vmi, spec)
            await self.hypervisor.start(spec)
        except (HypervisorError, OSError) as err:
            status = phase_status(vmi, VMIPhase.FAILED, reason=f"cannot start: {err}", now=self._now())
            await self._write(vmi, raw, status)
            return
        await self._events.record(
            raw, type="Normal", reason="Started", message="VirtualMachineInstance started."
        )
        observed = await self._observe(machine)
        if observed is not None:
            desired = self._desired(vmi)
            plan = decide_sync(vmi, observed, desired, now=self._now(), support=self._support)
            await self._sync(vmi, raw, machine, plan)

    async def _sync(self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str, plan: Sync) -> None:
        """Report the hotplugs in flight, apply them, and report what the machine then has."""
        failures = dict(plan.failures)
        observed: ObservedMachine | None = None
        if plan.operations and plan.desired is not None:
            vmi, raw = await self.in_place.apply(vmi, raw, machine, plan, failures)
        elif plan.desired is None:
            log.warning("%s/%s: the spec cannot run here; hot-plugging nothing", *vmi_key_of(machine))
        observed = await self._observe(machine)
        if observed is None:
            return  # it ended meanwhile: the next reconcile reports that
        if (steps := lifecycle_plan(vmi.metadata.annotations or {}, observed)).steps:
            raw = await self._operate(raw, machine, steps)
            vmi = VirtualMachineInstance.model_validate(raw)
            observed = await self._observe(machine)
            if observed is None:
                return
        status = machine_status(
            vmi, observed, desired=plan.desired, failures=failures, now=self._now(), support=self._support
        )
        await self._write(vmi, raw, status)

    async def _operate(self, raw: JsonObject, machine: str, plan: LifecyclePlan) -> JsonObject:
        """Take the guest steps of ``plan``; its one-shot requests are marked done first (at most once)."""
        if plan.taken:
            annotations = done_annotations(raw["metadata"].get("annotations") or {}, plan.taken)
            raw = await self._client.update(
                VIRTUAL_MACHINE_INSTANCES,
                {**raw, "metadata": {**raw["metadata"], "annotations": annotations}},
            )
        for step in plan.steps:
            try:
                await perform(self.hypervisor, machine, step)
            except HypervisorError as err:
                message = f"{step.value} failed: {err}"
                await self._events.record(raw, type="Warning", reason="GuestOperationFailed", message=message)
                return raw
            await self._events.record(
                raw, type="Normal", reason=step.value, message=f"The guest was {step.value.lower()}."
            )
        return raw

    async def _write(
        self, vmi: VirtualMachineInstance, raw: JsonObject, status: VirtualMachineInstanceStatus
    ) -> JsonObject:
        """Store ``status`` if it changed (ConflictError: the loop reconciles again), announcing the phase."""
        if status == vmi.status:
            return raw
        stored = await self._client.update(
            VIRTUAL_MACHINE_INSTANCES, {**raw, "status": status.to_wire()}, subresource="status"
        )
        before = vmi.status.phase if vmi.status is not None else None
        if status.phase is not before:
            await self._announce(stored, status)
        return stored

    async def _announce(self, raw: JsonObject, status: VirtualMachineInstanceStatus) -> None:
        if status.phase is VMIPhase.SUCCEEDED:
            message = f"The guest stopped: {status.reason or 'shut down'}"
            await self._events.record(raw, type="Normal", reason="Stopped", message=message)
        elif status.phase is VMIPhase.FAILED:
            message = f"The guest failed: {status.reason or 'unknown reason'}"
            await self._events.record(raw, type="Warning", reason="Failed", message=message)

    # -- ending ----------------------------------------------------------------------------------

    async def _finalize(
        self, vmi: VirtualMachineInstance, raw: JsonObject, machine: str, *, grace_period: float
    ) -> None:
        """Stop the machine of a deleted VMI, forget it, release its files, then the finalizer."""
        stopped = await self._discard(machine, grace_period=grace_period)
        if stopped:
            message = "VirtualMachineInstance stopped: it was deleted."
            await self._events.record(raw, type="Normal", reason="Stopped", message=message)
        if self._preparer is not None:
            await self._preparer.release(vmi)
        finalizers = list(vmi.metadata.finalizers or ())
        if MACHINE_FINALIZER in finalizers:
            finalizers.remove(MACHINE_FINALIZER)
            with contextlib.suppress(NotFoundError):
                await self._client.update(
                    VIRTUAL_MACHINE_INSTANCES,
                    {**raw, "metadata": {**raw["metadata"], "finalizers": finalizers}},
                )

    async def _discard(self, machine: str, *, grace_period: float = DEFAULT_GRACE_PERIOD) -> bool:
        """Stop (if it still runs) and forget ``machine``; True if it had to be stopped."""
        observed = await self._observe(machine)
        if observed is None:
            return False
        stopped = observed.state in _LIVE
        if stopped:
            await self.hypervisor.stop(machine, grace_period=grace_period)
        await self.hypervisor.forget(machine)
        return stopped
