"""KubeVirt's own example manifests (``tests/data/upstream/kubevirt-examples``) against ``vmplane serve``.

Each file is applied with kubectl, as a KubeVirt user would, and must end as its row in ``EXPECTED``
says: a VM accepted (all of them ask for ``runStrategy: Halted``), a VMI accepted and Running, or a
refusal whose message names the unsupported kind or field. The counts are in the README.

Eight VMIs ask for ``guest: 1024M`` (1,024,000,000 bytes, not a whole MiB): they run because the agent
rounds a guest's memory up to a whole MiB, as libvirt does for KubeVirt.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_api_support import ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "upstream" / "kubevirt-examples"


def _unserved(kind: str) -> tuple[str, str]:
    return ("refused", f'no matches for kind "{kind}"')


def _unknown(field: str) -> tuple[str, str]:
    return ("refused", f'unknown field "{field}"')


EXPECTED: dict[str, tuple[str, str]] = {
    "clarge.yaml": _unserved("VirtualMachineInstancetype"),
    "cluster-csmall.yaml": _unserved("VirtualMachineClusterInstancetype"),
    "csmall.yaml": _unserved("VirtualMachineInstancetype"),
    "example-migration-policy.yaml": _unserved("MigrationPolicy"),
    "migration-job.yaml": _unserved("VirtualMachineInstanceMigration"),
    "non-preemtible.yaml": _unserved("PriorityClass"),
    "pgpu-resource-claim-tmpl.yaml": _unserved("ResourceClaimTemplate"),
    "preemtible.yaml": _unserved("PriorityClass"),
    "virtio.yaml": _unserved("VirtualMachinePreference"),
    "vm-alpine-datavolume.yaml": ("vm", ""),
    "vm-alpine-multipvc.yaml": ("vm", ""),
    "vm-cirros-clarge-virtio.yaml": _unknown("spec.instancetype"),
    "vm-cirros-clarge-windows.yaml": _unknown("spec.instancetype"),
    "vm-cirros-clarge.yaml": _unknown("spec.instancetype"),
    "vm-cirros-cluster-csmall.yaml": _unknown("spec.instancetype"),
    "vm-cirros-csmall.yaml": _unknown("spec.instancetype"),
    "vm-cirros-sata.yaml": ("vm", ""),
    "vm-cirros-with-sidecar-hook-configmap.yaml": ("vm", ""),
    "vm-cirros.yaml": ("vm", ""),
    "vm-pool-cirros.yaml": _unserved("VirtualMachinePool"),
    "vm-priorityclass.yaml": ("vm", ""),
    "vm-windows-clarge-windows.yaml": _unknown("spec.instancetype"),
    "vmi-alpine-efi.yaml": ("running", ""),
    "vmi-arm.yaml": ("running", ""),
    "vmi-dra-pgpu.yaml": _unknown("spec.domain.devices.gpus"),
    "vmi-ephemeral.yaml": ("running", ""),
    "vmi-fedora-isolated.yaml": ("running", ""),
    "vmi-fedora.yaml": ("running", ""),
    "vmi-gpu.yaml": _unknown("spec.domain.devices.gpus"),
    "vmi-host-disk.yaml": ("refused", "spec.volumes[0].hostDisk.path: Invalid value: '/var/data/disk.img'"),
    "vmi-kernel-boot.yaml": ("running", ""),
    "vmi-masquerade.yaml": ("running", ""),
    "vmi-migratable.yaml": ("running", ""),
    "vmi-multus-multiple-net.yaml": ("running", ""),
    "vmi-multus-ptp.yaml": ("running", ""),
    "vmi-nocloud.yaml": ("running", ""),
    "vmi-preset-small.yaml": _unserved("VirtualMachineInstancePreset"),
    "vmi-pvc.yaml": ("running", ""),
    "vmi-replicaset-cirros.yaml": _unserved("VirtualMachineInstanceReplicaSet"),
    "vmi-sata.yaml": ("running", ""),
    "vmi-secureboot.yaml": ("running", ""),
    "vmi-sriov.yaml": ("running", ""),
    "vmi-usb.yaml": _unknown("spec.domain.devices.hostDevices"),
    "vmi-windows.yaml": _unknown("spec.domain.devices.tpm"),
    "vmi-with-sidecar-hook-configmap.yaml": ("running", ""),
    "vmi-with-sidecar-hook.yaml": ("running", ""),
    "windows.yaml": _unserved("VirtualMachinePreference"),
}


def test_every_upstream_example_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)


def _vmi_state(server: ApiServer, name: str) -> tuple[str, str]:
    result = server.kubectl("get", "vmi", name, "-o", "json", check=False)
    if result.returncode != 0:
        return "", ""
    status = json.loads(result.stdout).get("status") or {}
    messages = " ".join(c.get("message") or "" for c in status.get("conditions") or [])
    return status.get("phase") or "", f"{status.get('reason') or ''} {messages}"


def _settled(server: ApiServer, name: str, timeout: float = 30.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        phase, why = _vmi_state(server, name)
        if phase in ("Running", "Failed") or time.monotonic() > deadline:
            return phase, why
        time.sleep(0.2)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_upstream_example(api_server: ApiServer, name: str) -> None:
    outcome, detail = EXPECTED[name]
    path = str(EXAMPLES / name)
    applied = api_server.kubectl("apply", "-f", path, check=False)
    try:
        if outcome == "refused":
            assert applied.returncode != 0
            assert detail in applied.stderr
            return
        assert applied.returncode == 0, applied.stderr
        if outcome == "vm":
            assert "virtualmachine.kubevirt.io/" in applied.stdout
            return
        vmi = applied.stdout.split("/", 1)[1].split()[0]
        phase, why = _settled(api_server, vmi)
        assert phase == "Running", why
    finally:
        api_server.kubectl(
            "delete", "-f", path, "--ignore-not-found", "--wait=true", "--timeout=60s", check=False
        )
