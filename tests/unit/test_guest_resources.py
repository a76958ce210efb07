"""``api.guest_resources``: what a VMI takes of its node, and what a node has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vmplane.api.guest_resources import (
    QEMU_OVERHEAD_BYTES,
    NodeUsage,
    Resources,
    allocatable_of,
    cpu_allocation_ratio,
    guest_request,
    requested_by_node,
)
from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.testing.builders import vm_spec

GI = 2**30
MI = 2**20


@pytest.mark.parametrize(
    ("spec", "cpu_millis"),
    [
        pytest.param(vm_spec(), 100, id="one-vcpu-is-a-tenth-of-a-cpu"),
        pytest.param(vm_spec(sockets=2, cores=2, threads=2), 800, id="sockets-x-cores-x-threads"),
        pytest.param(vm_spec(sockets=1, max_sockets=8), 100, id="maxSockets-headroom-not-counted"),
        pytest.param(vm_spec(sockets=3, requests={"cpu": "1500m"}), 1500, id="explicit-request-wins"),
    ],
)
def test_cpu_request_counts_the_current_vcpus(spec: object, cpu_millis: int) -> None:
    assert guest_request(spec).cpu_millis == cpu_millis  # type: ignore[arg-type]


def test_cpu_allocation_ratio_divides_the_vcpus() -> None:
    assert guest_request(vm_spec(sockets=3), cpu_allocation_ratio=1).cpu_millis == 3000
    assert guest_request(vm_spec(sockets=1), cpu_allocation_ratio=3).cpu_millis == 334  # rounded up
    configured = KubeVirtConfiguration.model_validate({"developerConfiguration": {"cpuAllocationRatio": 2}})
    assert cpu_allocation_ratio(configured) == 2
    assert cpu_allocation_ratio(KubeVirtConfiguration()) == 10


def test_memory_request_is_guest_plus_qemu_overhead_and_page_tables() -> None:
    assert guest_request(vm_spec(guest="1Gi")).memory_bytes == GI + QEMU_OVERHEAD_BYTES + 2 * MI
    assert guest_request(vm_spec(guest="1Gi", max_guest="4Gi")) == guest_request(vm_spec(guest="1Gi"))


def test_memory_request_falls_back_to_the_memory_request() -> None:
    spec = vm_spec(guest=None, requests={"memory": "512Mi"})
    assert guest_request(spec).memory_bytes == 512 * MI + QEMU_OVERHEAD_BYTES + MI


def test_allocatable_of_a_node() -> None:
    node = {"status": {"allocatable": {"cpu": "1900m", "memory": "7936Mi"}}}
    assert allocatable_of(node) == Resources(1900, 7936 * MI)
    assert allocatable_of({"status": {"allocatable": {"cpu": "2"}}}) is None
    assert allocatable_of({}) is None


def _vmi(
    name: str, node: str | None, phase: str, sockets: int = 1, generation: int | None = None
) -> dict[str, object]:
    return {
        "metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": vm_spec(sockets=sockets, guest="1Gi").to_wire(),
        "status": {"nodeName": node, "phase": phase},
    }


def test_requested_by_node_sums_the_bound_vmis_that_still_run() -> None:
    vmis = [
        _vmi("a", "n1", "Running"),
        _vmi("b", "n1", "Scheduled", sockets=2),
        _vmi("c", "n1", "Failed"),
        _vmi("d", "n2", "Succeeded"),
        _vmi("e", None, "Pending"),
    ]
    one = guest_request(vm_spec(sockets=1, guest="1Gi"))
    two = guest_request(vm_spec(sockets=2, guest="1Gi"))
    assert requested_by_node(vmis) == {"n1": one + two}
    assert requested_by_node(vmis, exclude=("default", "b")) == {"n1": one}


class _Cache:
    """A VMI informer's cache, as NodeUsage sees it."""

    def __init__(self, *vmis: dict[str, Any]) -> None:
        self.objects = {_key(v): v for v in vmis}
        self.handlers: list[Callable[[tuple[str, str]], None]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def list(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def on_change(self, handler: Callable[[tuple[str, str]], None]) -> None:
        self.handlers.append(handler)

    def put(self, vmi: dict[str, Any]) -> None:
        self.objects[_key(vmi)] = vmi
        for handler in self.handlers:
            handler(_key(vmi))

    def remove(self, name: str) -> None:
        del self.objects[("default", name)]
        for handler in self.handlers:
            handler(("default", name))


def _key(vmi: dict[str, Any]) -> tuple[str, str]:
    return (vmi["metadata"]["namespace"], vmi["metadata"]["name"])


def test_node_usage_counts_what_the_cache_held_before_it() -> None:
    vmis = [_vmi("a", "n1", "Running", generation=1), _vmi("b", "n2", "Scheduled", sockets=2, generation=1)]
    assert NodeUsage(_Cache(*vmis)).by_node() == requested_by_node(vmis)


def test_node_usage_follows_binding_growth_completion_and_deletion() -> None:
    cache = _Cache()
    usage = NodeUsage(cache)
    cache.put(_vmi("a", None, "Pending", generation=1))
    assert usage.by_node() == {}
    cache.put(_vmi("a", "n1", "Scheduled", generation=1))
    cache.put(_vmi("b", "n1", "Running", generation=1))
    assert usage.by_node() == {"n1": guest_request(vm_spec()) + guest_request(vm_spec())}
    cache.put(_vmi("a", "n1", "Running", sockets=2, generation=2))
    assert usage.by_node() == {"n1": guest_request(vm_spec(sockets=2)) + guest_request(vm_spec())}
    cache.put(_vmi("a", "n1", "Succeeded", sockets=2, generation=2))
    cache.remove("b")
    assert usage.by_node() == {}


def test_node_usage_leaves_out_the_vmi_being_judged() -> None:
    cache = _Cache(_vmi("a", "n1", "Running", generation=1), _vmi("b", "n1", "Running", generation=1))
    assert NodeUsage(cache).by_node(exclude=("default", "a")) == {"n1": guest_request(vm_spec())}


def test_node_usage_without_the_only_vmi_of_a_node_leaves_the_node_out() -> None:
    vmis = [_vmi("a", "n1", "Running", generation=1)]
    assert NodeUsage(_Cache(*vmis)).by_node(exclude=("default", "a")) == requested_by_node(
        vmis, exclude=("default", "a")
    )


def test_node_usage_follows_the_cpu_allocation_ratio() -> None:
    usage = NodeUsage(_Cache(_vmi("a", "n1", "Running", generation=1)))
    assert usage.by_node(cpu_allocation_ratio=10)["n1"].cpu_millis == 100
    assert usage.by_node(cpu_allocation_ratio=1)["n1"].cpu_millis == 1000


def test_short_of_names_each_resource_in_the_schedulers_order() -> None:
    assert Resources(2000, 2 * GI).short_of(Resources(1000, GI)) == ["cpu", "memory"]
    assert Resources(500, 2 * GI).short_of(Resources(1000, GI)) == ["memory"]
    assert Resources(500, GI).short_of(Resources(1000, GI)) == []
