"""Planner throughput against a JSON round trip of the same VM, measured side by side in one run.

Goal (issue 2): one plan costs at most 3 JSON round trips (``json.dumps`` + ``json.loads``) of the VM.
Run: ``.venv/bin/python bench/planner.py``.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.kubevirt import KubeVirtConfiguration, RolloutStrategy
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceSpec, VirtualMachineInstanceStatus
from vmplane.rollout.effective import effective_spec
from vmplane.rollout.plan import plan


def realistic_vm() -> dict[str, Any]:
    """A VM with 8 disks, 4 NICs, node affinity, pod anti-affinity and tolerations."""
    disks = [{"name": f"disk{i}", "disk": {"bus": "virtio"}, "serial": f"SN{i:04d}"} for i in range(8)]
    volumes: list[dict[str, Any]] = [
        {"name": "disk0", "containerDisk": {"image": "quay.io/containerdisks/fedora:40"}}
    ]
    volumes += [
        {"name": f"disk{i}", "persistentVolumeClaim": {"claimName": f"data-{i}", "hotpluggable": i % 2 == 0}}
        for i in range(1, 8)
    ]
    interfaces = [{"name": "default", "masquerade": {}}] + [
        {"name": f"net{i}", "bridge": {}, "model": "virtio", "macAddress": f"52:54:00:00:00:0{i}"}
        for i in range(1, 4)
    ]
    networks = [{"name": "default", "pod": {}}] + [
        {"name": f"net{i}", "multus": {"networkName": f"vlan-{100 + i}"}} for i in range(1, 4)
    ]
    term = {
        "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]
    }
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "bench", "namespace": "default", "labels": {"app": "db", "tier": "backend"}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "domain": {
                        "cpu": {"sockets": 2, "cores": 2, "threads": 1, "model": "host-passthrough"},
                        "memory": {"guest": "4Gi"},
                        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
                        "devices": {"disks": disks, "interfaces": interfaces, "rng": {}},
                        "machine": {"type": "q35"},
                    },
                    "volumes": volumes,
                    "networks": networks,
                    "nodeSelector": {"kubernetes.io/arch": "amd64"},
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {"weight": 10, "preference": term}
                            ],
                        },
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {"app": "db"}},
                                }
                            ]
                        },
                    },
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},
                        {
                            "key": "node.kubernetes.io/unreachable",
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 300,
                        },
                    ],
                    "evictionStrategy": "LiveMigrate",
                    "terminationGracePeriodSeconds": 180,
                },
            },
        },
    }


def rate(fn: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls per second of ``fn``, best of three timed batches."""
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            for _ in range(20):
                fn()
            count += 20
        best = max(best, count / elapsed)
    return best


def main() -> int:
    """Print plans/s, JSON round trips/s and their ratio; 1 when a plan costs more than 3 round trips."""
    config = KubeVirtConfiguration(vm_rollout_strategy=RolloutStrategy.LIVE_UPDATE)
    wire = realistic_vm()
    vm = VirtualMachine.model_validate(wire)
    running = effective_spec(vm.spec.template.spec, config).spec
    observed = VirtualMachineInstanceStatus(
        current_cpu_topology=initial_cpu_topology(running), memory=initial_memory_status(running)
    )
    edited = copy.deepcopy(wire["spec"]["template"]["spec"])
    edited["domain"]["cpu"]["sockets"] = 3  # live: a CPU hotplug
    edited["hostname"] = "db-1"  # pending: not live-updatable
    desired = effective_spec(VirtualMachineInstanceSpec.model_validate(edited), config)

    result = plan(running=running, desired=desired, observed=observed, config=config)
    assert [p.reason for p in result.pending] == ["NonLiveUpdatableChange", "WaitingForRestart"], (
        result.pending
    )
    edited_live_only = dict(edited)
    del edited_live_only["hostname"]
    live_only = effective_spec(VirtualMachineInstanceSpec.model_validate(edited_live_only), config)
    assert len(plan(running=running, desired=live_only, observed=observed, config=config).live) == 1

    plans = rate(lambda: plan(running=running, desired=desired, observed=observed, config=config))
    plans_live = rate(lambda: plan(running=running, desired=live_only, observed=observed, config=config))
    round_trips = rate(lambda: json.loads(json.dumps(wire)))
    print(f"VM JSON size: {len(json.dumps(wire))} bytes")
    print(f"plans/s (one live + one pending change): {plans:,.0f}")
    print(f"plans/s (one live change, applied):      {plans_live:,.0f}")
    print(f"JSON round trips/s (dumps + loads):      {round_trips:,.0f}")
    worst = min(plans, plans_live)
    ratio = round_trips / worst
    print(
        f"one plan costs {ratio:.2f} JSON round trips (goal: <= 3.00) -> {'PASS' if ratio <= 3 else 'FAIL'}"
    )
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
