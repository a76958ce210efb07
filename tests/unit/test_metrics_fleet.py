"""The fleet's per-VM series are a pure function of the objects read at scrape time."""

from __future__ import annotations

from typing import Any

from vmplane.metrics import fleet_metrics


def vm(name: str, *, status: str = "Running", pending: list[dict[str, str]] | None = None) -> dict[str, Any]:
    conditions = [{"type": "RestartRequired", "status": "True"}] if pending else []
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}, "memory": {"guest": "512Mi"}}}}},
        "status": {"printableStatus": status, "conditions": conditions, "pendingChanges": pending or []},
    }


def samples(vms: list[dict[str, Any]], vmis: list[dict[str, Any]] = []) -> dict[tuple[str, str], float]:  # noqa: B006
    out: dict[tuple[str, str], float] = {}
    for family in fleet_metrics(vms, vmis):
        for s in family.samples:
            key = (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())))
            out[key] = s.value
    return out


def test_an_empty_fleet_has_no_samples() -> None:
    assert samples([]) == {}


def test_pending_changes_are_counted_per_reason_and_source() -> None:
    pending = [
        {"path": "a", "reason": "NonLiveUpdatableChange", "source": "template"},
        {"path": "b", "reason": "NonLiveUpdatableChange", "source": "template"},
        {"path": "c", "reason": "WaitingForRestart", "source": "cluster"},
    ]
    got = samples([vm("web", pending=pending)])
    assert (
        got[
            "vmplane_vm_pending_changes",
            "name=web,namespace=default,reason=NonLiveUpdatableChange,source=template",
        ]
        == 2
    )
    assert (
        got[
            "vmplane_vm_pending_changes", "name=web,namespace=default,reason=WaitingForRestart,source=cluster"
        ]
        == 1
    )
    assert got["vmplane_vm_restart_required", "name=web,namespace=default"] == 1


def test_a_vm_without_pending_changes_reports_restart_required_zero() -> None:
    got = samples([vm("idle", status="Stopped")])
    assert got["vmplane_vm_restart_required", "name=idle,namespace=default"] == 0
    assert got["kubevirt_vm_info", "name=idle,namespace=default,status=Stopped"] == 1
    assert not [k for k in got if k[0] == "vmplane_vm_pending_changes"]


def test_requested_memory_is_in_bytes() -> None:
    got = samples([vm("web")])
    assert (
        got["kubevirt_vm_resource_requests", "name=web,namespace=default,resource=memory,unit=bytes"]
        == 512 << 20
    )


def test_running_vcpus_multiply_the_current_topology() -> None:
    vmi = {
        "metadata": {"namespace": "default", "name": "web"},
        "status": {
            "phase": "Running",
            "nodeName": "node01",
            "currentCPUTopology": {"sockets": 2, "cores": 2, "threads": 1},
            "memory": {"guestCurrent": "1Gi"},
        },
    }
    got = samples([], [vmi])
    assert got["kubevirt_vmi_vcpu_count", "name=web,namespace=default,node=node01"] == 4
    assert got["kubevirt_vmi_info", "name=web,namespace=default,node=node01,phase=Running"] == 1
    assert got["kubevirt_vmi_memory_domain_bytes", "name=web,namespace=default,node=node01"] == 1 << 30


def test_unparseable_values_are_left_out_not_fatal() -> None:
    broken = vm("odd")
    broken["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "lots"
    got = samples([broken])
    assert not [k for k in got if k[0] == "kubevirt_vm_resource_requests" and "memory" in k[1]]
