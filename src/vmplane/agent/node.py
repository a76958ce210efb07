"""This host's ``v1`` Node: what the scheduler reads (labels, taints, readiness), and what ``kubectl
describe node`` and the Kubernetes clients expect of a kubelet's Node (addresses, capacity,
allocatable, ``nodeInfo``, the Ready and pressure conditions).

``host_facts`` is the one place that reads the host; ``node_object`` builds the Node from those facts
and is pure. ``register_node`` writes it, creating or refreshing it so an agent restarted with other
labels or taints is scheduled by them. ``NodeRegistration`` keeps it registered (a Node deleted by
mistake is created again, as a kubelet does: the scheduler places nothing on a node without one) and
renews the Ready condition's ``lastHeartbeatTime`` every ``heartbeat_interval`` seconds (a kubelet's
``nodeStatusUpdateFrequency``, 10 s), and, every ``lease_interval`` seconds (10 s) however long
the heartbeat interval, the node's ``coordination.k8s.io`` Lease in ``kube-node-lease`` (held by
the node, ``leaseDurationSeconds`` 40, owned by the Node), which is what ``kubectl describe node``
shows as the node's Lease and what node failure detection and fencing count on.

Allocatable is capacity minus :data:`RESERVED`: what the agent, the API server and QEMU's own
overhead keep for themselves (a kubelet's ``systemReserved``), so that guests are not sized to the
last byte of the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vmplane import __version__
from vmplane.api.node_annotations import CONSOLE_CERT_SHA256, CONSOLE_ENDPOINT
from vmplane.api.quantity import Quantity, QuantityError
from vmplane.api.resources import LEASES, NODES
from vmplane.api.scheduling import SCHEDULABLE_LABEL, Taint
from vmplane.api.timestamps import micro_timestamp
from vmplane.client.base import ObjectClient, UnavailableError
from vmplane.reconcile.factory import SharedInformerFactory
from vmplane.reconcile.informer import Key
from vmplane.reconcile.loop import Controller, Result
from vmplane.store.base import AlreadyExistsError, ConflictError, JsonObject, NotFoundError

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "KUBELET_VERSION",
    "RESERVED",
    "HostFacts",
    "NodeRegistration",
    "host_capacity",
    "host_facts",
    "lease_object",
    "node_object",
    "qemu_runtime_version",
    "register_node",
    "renew_heartbeat",
    "renew_lease",
]

log = logging.getLogger(__name__)

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
#: A kubelet's ``nodeStatusUpdateFrequency``.
DEFAULT_HEARTBEAT_INTERVAL = 10.0

#: ``nodeInfo.kubeletVersion`` (and the VERSION column): the agent's version, semver-shaped as a
#: kubelet's is so clients that parse it can.
KUBELET_VERSION = f"v{__version__}-vmplane"
#: How often the node's Lease is renewed (a kubelet's: a quarter of the lease duration).
DEFAULT_LEASE_INTERVAL = 10.0
# Registration reads and merges again this many times when the Node changes under it.
_REGISTER_ATTEMPTS = 5
#: Where node Leases live, and how long one holds without renewal (a kubelet's defaults).
NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
#: Kept back from the guests: 100 millicores and 256 MiB (see the module docstring).
RESERVED = {"cpu_millis": 100, "memory_kib": 256 * 1024}

# The conditions a kubelet reports, with its reasons and messages. The pressure conditions are not
# measured by vmplane: they stay False.
_READY = ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
_PRESSURE = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the Node reports of this host, gathered by :func:`host_facts`."""

    hostname: str
    internal_ip: str
    cpus: int
    memory_kib: int
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    architecture: str
    container_runtime_version: str
    #: Where this agent serves its guests' consoles to the API server, and its certificate's SHA-256
    #: (published as Node annotations; see ``apiserver.node_console``); empty when it serves none.
    console_endpoint: str = ""
    console_cert_sha256: str = ""
    console_port: int = 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _os_image(os_release: str) -> str:
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return "Linux"


def _internal_ip() -> str:
    """The address this host would send from (a UDP ``connect`` sends nothing); loopback without one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any outside address, never reached
        return str(probe.getsockname()[0])
    return "127.0.0.1"


def _uuid_of(machine_id: str) -> str:
    text = machine_id.ljust(32, "0")[:32]
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def qemu_runtime_version(binary: str = "qemu-system-x86_64") -> str:
    """``qemu://7.2.22``, as a kubelet reports ``containerd://1.7.2``; ``qemu://unknown`` without one."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "qemu://unknown"
    match = re.search(r"version (\d+(?:\.\d+)*)", out.stdout)
    return f"qemu://{match.group(1)}" if match else "qemu://unknown"


def host_facts(*, runtime_version: str) -> HostFacts:
    """This host as the Node reports it (``runtime_version`` names the hypervisor, e.g. QEMU's)."""
    machine_id = _read("/etc/machine-id")
    return HostFacts(
        hostname=socket.gethostname(),
        internal_ip=_internal_ip(),
        cpus=os.cpu_count() or 1,
        memory_kib=os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024,
        machine_id=machine_id,
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower() or _uuid_of(machine_id),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel_version=platform.release(),
        os_image=_os_image(_read("/etc/os-release")),
        architecture=_ARCHITECTURES.get(platform.machine(), platform.machine()),
        container_runtime_version=runtime_version,
    )


def host_capacity(facts: HostFacts) -> dict[str, str]:
    """CPUs and memory of this host, as a kubelet reports them."""
    return {"cpu": str(facts.cpus), "memory": f"{facts.memory_kib}Ki"}


def _allocatable(capacity: Mapping[str, str]) -> dict[str, str]:
    """Capacity minus :data:`RESERVED` for CPU and memory (never below zero); a capacity that is no
    quantity is passed on as it is."""
    allocatable = dict(capacity)
    with contextlib.suppress(QuantityError, KeyError):
        millis = Quantity.parse(capacity["cpu"]).milli()
        allocatable["cpu"] = f"{max(millis - RESERVED['cpu_millis'], 0)}m"
    with contextlib.suppress(QuantityError, KeyError):
        kib = Quantity.parse(capacity["memory"]).bytes() // 1024
        allocatable["memory"] = f"{max(kib - RESERVED['memory_kib'], 0)}Ki"
    return allocatable


def _condition(spec: tuple[str, str, str, str], now: str) -> JsonObject:
    kind, status, reason, message = spec
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def node_object(
    *,
    name: str,
    labels: Mapping[str, str],
    taints: Sequence[Taint],
    facts: HostFacts,
    now: str,
    capacity: Mapping[str, str] | None = None,
) -> JsonObject:
    """The Node, Ready, with the labels every vmplane node has (``labels`` may override them).

    ``capacity`` overrides what ``facts`` say of CPUs and memory (tests, or a host shared on purpose).
    """
    arch = facts.architecture
    capacity = dict(capacity) if capacity is not None else host_capacity(facts)
    annotations = (
        {
            CONSOLE_ENDPOINT: facts.console_endpoint,
            CONSOLE_CERT_SHA256: facts.console_cert_sha256,
        }
        if facts.console_endpoint
        else {}
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            **({"annotations": annotations} if annotations else {}),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": arch,
                "kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                SCHEDULABLE_LABEL: "true",
                **labels,
            },
        },
        "spec": {"taints": [t.to_wire() for t in taints]} if taints else {},
        "status": {
            "conditions": [_condition(c, now) for c in (*_PRESSURE, _READY)],
            "addresses": [
                {"type": "InternalIP", "address": facts.internal_ip},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": _allocatable(capacity),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.console_port}},
            "nodeInfo": {
                "machineID": facts.machine_id,
                "systemUUID": facts.system_uuid,
                "bootID": facts.boot_id,
                "kernelVersion": facts.kernel_version,
                "osImage": facts.os_image,
                "containerRuntimeVersion": facts.container_runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch,
            },
        },
    }


def renew_heartbeat(stored: JsonObject, fresh: JsonObject) -> JsonObject:
    """The status to write: ``fresh``'s, keeping each condition's ``lastTransitionTime`` from
    ``stored`` while its status has not changed (Kubernetes moves it only on a transition)."""
    status = stored.get("status")
    old_conditions = status.get("conditions") if isinstance(status, dict) else None
    before = (
        {c.get("type"): c for c in old_conditions if isinstance(c, dict)}
        if isinstance(old_conditions, list)
        else {}
    )
    conditions = []
    for condition in fresh["status"]["conditions"]:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
            condition = {**condition, "lastTransitionTime": old["lastTransitionTime"]}
        conditions.append(condition)
    return {**fresh["status"], "conditions": conditions}


def lease_object(*, node: JsonObject, renew_time: str) -> JsonObject:
    """The node's Lease as of ``renew_time`` (RFC 3339 with microseconds), owned by ``node``."""
    name = node["metadata"]["name"]
    metadata: JsonObject = {"name": name, "namespace": NODE_LEASE_NAMESPACE}
    uid = node["metadata"].get("uid")
    if uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": renew_time,
        },
    }


async def renew_lease(client: ObjectClient, lease: JsonObject) -> None:
    """Create ``lease``, or renew the stored one: ``lease``'s spec and owner (a Node registered again
    has a new uid), the rest of the stored metadata kept."""
    with contextlib.suppress(AlreadyExistsError):
        await client.create(LEASES, lease)
        return
    meta = lease["metadata"]
    current = await client.get(LEASES, meta["namespace"], meta["name"])
    metadata = {**current["metadata"]}
    if "ownerReferences" in meta:
        metadata["ownerReferences"] = meta["ownerReferences"]
    await client.update(LEASES, {**current, "metadata": metadata, "spec": lease["spec"]})


async def register_node(client: ObjectClient, node: JsonObject) -> None:
    """Create ``node``, or replace the labels, taints and status of the one stored under its name
    (the rest of its spec stays: a cordon, ``spec.unschedulable``, outlives an agent restart, as a
    kubelet leaves it)."""
    name = node["metadata"]["name"]
    with contextlib.suppress(AlreadyExistsError):
        await client.create(NODES, node)
        return
    # The node lifecycle controller may write the Node meanwhile (its taints, its conditions): read
    # again and merge again, as a kubelet's registration retries on a conflict.
    for attempt in range(_REGISTER_ATTEMPTS):
        current: dict[str, Any] = await client.get(NODES, "", name)
        metadata = {**current["metadata"], "labels": node["metadata"]["labels"]}
        if node["metadata"].get("annotations"):
            metadata["annotations"] = {
                **(metadata.get("annotations") or {}),
                **node["metadata"]["annotations"],
            }
        spec = {**(current.get("spec") or {}), **node["spec"]}
        if "taints" not in node["spec"]:
            spec.pop("taints", None)
        try:
            updated = await client.update(NODES, {**current, "metadata": metadata, "spec": spec})
            with contextlib.suppress(NotFoundError):
                status = renew_heartbeat(current, node)
                await client.update(NODES, {**updated, "status": status}, subresource="status")
            return
        except ConflictError:
            if attempt == _REGISTER_ATTEMPTS - 1:
                raise


def _monotonic() -> float:
    """The running event loop's clock: monotonic, and virtual in tests on a virtual-time loop."""
    return asyncio.get_running_loop().time()


class NodeRegistration:
    """Keeps this host's Node registered and its heartbeat fresh.

    ``build`` makes the Node as of now (fresh heartbeat). ``start`` registers it and starts watching;
    a watch on Nodes re-creates it whenever it goes away, and every ``heartbeat_interval`` seconds the
    reconcile renews its conditions' ``lastHeartbeatTime``.
    """

    def __init__(
        self,
        *,
        client: ObjectClient,
        name: str,
        build: Callable[[], JsonObject],
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        clock: Callable[[], datetime] | None = None,
        on_renewed: Callable[[float], None] | None = None,
        lease_interval: float = DEFAULT_LEASE_INTERVAL,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        """``clock`` stamps the Lease's ``renewTime`` (None: no Lease is kept); ``on_renewed`` is
        told of each successful renewal, with when it was sent on the event loop's monotonic clock
        (the agent's fencing counts from it). The Lease is renewed every ``lease_interval`` seconds
        whatever the heartbeat interval, as a kubelet renews its Lease every 10 s however seldom it
        posts its status: node failure detection and fencing depend on it."""
        informers = informers or SharedInformerFactory(client)
        self._client = client
        self._clock = clock
        self._key: Key = ("", name)
        self._build = build
        self._interval = heartbeat_interval
        self._lease_interval = lease_interval
        self._status_due = 0.0  # monotonic time of the next status heartbeat
        self._on_renewed = on_renewed
        self.nodes = informers.selected(NODES, field_selector=f"metadata.name={name}")
        self.controller: Controller[Key] = Controller(name="node-registration", reconciler=self, workers=1)
        self.nodes.on_change(self._changed)

    def _changed(self, key: Key) -> None:
        if key == self._key and self.nodes.get(*key) is None:
            self.controller.queue.add(key)

    async def start(self) -> None:
        """Register the Node (waiting, with backoff, for an API server not up yet), then keep it."""
        delay = 0.2
        while True:
            try:
                await register_node(self._client, self._build())
                break
            except UnavailableError as err:
                log.warning("cannot register node %s yet: %s", self._key[1], err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.nodes.start()
        await self.nodes.wait_synced()
        self.controller.start()
        # Reconciled at once: it renews the Lease (and re-registers a Node deleted meanwhile).
        self.controller.queue.add(self._key)

    async def stop(self) -> None:
        await self.controller.stop()
        await self.nodes.stop()

    async def reconcile(self, key: Key) -> Result:
        """Create the Node if the store has none, else renew its heartbeat when due and its Lease (an
        error retries with backoff); come back when the next of the two is due."""
        try:
            current = await self._client.get(NODES, "", key[1])
        except NotFoundError:
            log.warning("node %s was deleted; registering it again", key[1])
            await register_node(self._client, self._build())
            return Result(requeue_after=self._next())
        if _monotonic() >= self._status_due:
            status = renew_heartbeat(current, self._build())
            if status != current.get("status"):
                with contextlib.suppress(NotFoundError):
                    await self._client.update(NODES, {**current, "status": status}, subresource="status")
            self._status_due = _monotonic() + self._interval
        if self._clock is not None:
            sent = _monotonic()
            renew_time = micro_timestamp(self._clock())
            await renew_lease(self._client, lease_object(node=current, renew_time=renew_time))
            if self._on_renewed is not None:
                self._on_renewed(sent)
        return Result(requeue_after=self._next())

    def _next(self) -> float:
        """Seconds until the next Lease renewal or status heartbeat, whichever comes first."""
        if self._clock is None:
            return self._interval
        return min(self._lease_interval, max(self._status_due - _monotonic(), 0.0) or self._interval)
