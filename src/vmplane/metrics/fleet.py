"""Per-VM series, computed at scrape time from the objects as they are: nothing per VM is kept.

A VM deleted is simply absent from the next scrape, so these series stay bounded by the fleet; a
mutable per-VM gauge would have to be found and removed on every deletion. Names are KubeVirt's
where it has one (``kubevirt_vm_info``, ``kubevirt_vmi_info``, ``kubevirt_vmi_vcpu_count``,
``kubevirt_vmi_memory_domain_bytes``, ``kubevirt_vm_resource_requests``), vmplane's own for what
KubeVirt does not export (``vmplane_vm_restart_required``, ``vmplane_vm_pending_changes``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmplane.api.quantity import Quantity, QuantityError

__all__ = ["FleetCollector", "fleet_metrics"]

JsonObject = Mapping[str, Any]


def _meta(obj: JsonObject) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _bytes(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(Quantity.parse(value).bytes())
    except (QuantityError, TypeError, ValueError):
        return None


def _vcpus(topology: Any) -> int | None:
    if not isinstance(topology, Mapping):
        return None
    count = 1
    for part in ("sockets", "cores", "threads"):
        value = topology.get(part, 1)
        if not isinstance(value, int):
            return None
        count *= value
    return count


def _restart_required(vm: JsonObject) -> bool:
    conditions = _dig(vm, "status", "conditions") or []
    return any(
        isinstance(c, Mapping) and c.get("type") == "RestartRequired" and c.get("status") == "True"
        for c in conditions
    )


def _vm_families(vms: Iterable[JsonObject]) -> list[Metric]:
    info = GaugeMetricFamily(
        "kubevirt_vm_info", "Information about VirtualMachines.", labels=["namespace", "name", "status"]
    )
    requests = GaugeMetricFamily(
        "kubevirt_vm_resource_requests",
        "Resources requested by the VirtualMachine's template.",
        labels=["namespace", "name", "resource", "unit"],
    )
    restart = GaugeMetricFamily(
        "vmplane_vm_restart_required",
        "1 while the VM has changes waiting for a restart (its RestartRequired condition), else 0.",
        labels=["namespace", "name"],
    )
    pending = GaugeMetricFamily(
        "vmplane_vm_pending_changes",
        "Changes of the VM waiting for a restart, by reason and source (template or cluster).",
        labels=["namespace", "name", "reason", "source"],
    )
    for vm in vms:
        namespace, name = _meta(vm)
        status = str(_dig(vm, "status", "printableStatus") or "Unknown")
        info.add_metric([namespace, name, status], 1)
        domain = _dig(vm, "spec", "template", "spec", "domain") or {}
        cpu = _dig(domain, "cpu") or {}
        for unit in ("sockets", "cores", "threads"):
            value = cpu.get(unit) if isinstance(cpu, Mapping) else None
            if isinstance(value, int):
                requests.add_metric([namespace, name, "cpu", unit], value)
        memory = _bytes(_dig(domain, "memory", "guest"))
        if memory is not None:
            requests.add_metric([namespace, name, "memory", "bytes"], memory)
        restart.add_metric([namespace, name], 1 if _restart_required(vm) else 0)
        changes = _dig(vm, "status", "pendingChanges") or []
        counted = Counter(
            (str(c.get("reason", "")), str(c.get("source", "template")))
            for c in changes
            if isinstance(c, Mapping)
        )
        for (reason, source), count in sorted(counted.items()):
            pending.add_metric([namespace, name, reason, source], count)
    return [info, requests, restart, pending]


def _vmi_families(vmis: Iterable[JsonObject]) -> list[Metric]:
    info = GaugeMetricFamily(
        "kubevirt_vmi_info",
        "Information about VirtualMachineInstances.",
        labels=["namespace", "name", "phase", "node"],
    )
    vcpus = GaugeMetricFamily(
        "kubevirt_vmi_vcpu_count",
        "The number of vCPUs the running guest has (its current CPU topology).",
        labels=["namespace", "name", "node"],
    )
    memory = GaugeMetricFamily(
        "kubevirt_vmi_memory_domain_bytes",
        "The memory the running guest currently has, in bytes.",
        labels=["namespace", "name", "node"],
    )
    for vmi in vmis:
        namespace, name = _meta(vmi)
        node = str(_dig(vmi, "status", "nodeName") or "")
        info.add_metric([namespace, name, str(_dig(vmi, "status", "phase") or "Pending"), node], 1)
        count = _vcpus(_dig(vmi, "status", "currentCPUTopology"))
        if count is not None:
            vcpus.add_metric([namespace, name, node], count)
        current = _bytes(_dig(vmi, "status", "memory", "guestCurrent"))
        if current is not None:
            memory.add_metric([namespace, name, node], current)
    return [info, vcpus, memory]


def fleet_metrics(vms: Iterable[JsonObject], vmis: Iterable[JsonObject]) -> list[Metric]:
    """Every per-VM and per-VMI family for these objects (pure)."""
    return [*_vm_families(vms), *_vmi_families(vmis)]


class FleetCollector(Collector):
    """Reads the current VMs and VMIs (the controllers' caches) at each scrape."""

    def __init__(
        self, *, vms: Callable[[], Iterable[JsonObject]], vmis: Callable[[], Iterable[JsonObject]]
    ) -> None:
        self._vms = vms
        self._vmis = vmis

    def collect(self) -> Iterator[Metric]:
        yield from fleet_metrics(self._vms(), self._vmis())

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering does not read the caches (they may not be synced yet).
        yield from fleet_metrics((), ())
