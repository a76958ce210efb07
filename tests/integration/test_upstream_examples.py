"""KubeVirt's own example manifests (``tests/data/upstream/kubevirt-examples``) against ``vmplane serve``.

Each file is applied with kubectl, as a KubeVirt user would, and must end as its row in ``EXPECTED``
says: a VM accepted (all of them ask for ``runStrategy: Halted``), a VMI accepted and Running, or a
refusal whose message names the unsupported kind or field. The counts are in the README.

The instance-type VMs are applied alone, before their instance type exists, which upstream admits
(the VM waits for it); ``test_upstream_instancetype_vm_*`` apply them with their instance types.

Eight VMIs ask for ``guest: 1024M`` (1,024,000,000 bytes, not a whole MiB): they run because the agent
rounds a guest's memory up to a whole MiB, as libvirt does for KubeVirt.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from test_api_support import ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "upstream" / "kubevirt-examples"


def _unserved(kind: str) -> tuple[str, str]:
    return ("refused", f'no matches for kind "{kind}"')


def _unknown(field: str) -> tuple[str, str]:
    return ("refused", f'unknown field "{field}"')


EXPECTED: dict[str, tuple[str, str]] = {
    "clarge.yaml": ("accepted", ""),
    "cluster-csmall.yaml": ("accepted", ""),
    "csmall.yaml": ("accepted", ""),
    "example-migration-policy.yaml": _unserved("MigrationPolicy"),
    # Applied alone, as every example here: its VMI (vmi-migratable.yaml) is not there, and upstream's
    # admission refuses a migration of a VMI that does not exist.
    "migration-job.yaml": ("refused", 'spec.vmiName: the VMI "default/vmi-migratable" does not exist'),
    "non-preemtible.yaml": _unserved("PriorityClass"),
    "pgpu-resource-claim-tmpl.yaml": _unserved("ResourceClaimTemplate"),
    "preemtible.yaml": _unserved("PriorityClass"),
    "virtio.yaml": ("accepted", ""),
    "vm-alpine-datavolume.yaml": ("vm", ""),
    "vm-alpine-multipvc.yaml": ("vm", ""),
    "vm-cirros-clarge-virtio.yaml": ("vm", ""),
    "vm-cirros-clarge-windows.yaml": ("vm", ""),
    "vm-cirros-clarge.yaml": ("vm", ""),
    "vm-cirros-cluster-csmall.yaml": ("vm", ""),
    "vm-cirros-csmall.yaml": ("vm", ""),
    "vm-cirros-sata.yaml": ("vm", ""),
    "vm-cirros-with-sidecar-hook-configmap.yaml": ("vm", ""),
    "vm-cirros.yaml": ("vm", ""),
    "vm-pool-cirros.yaml": _unserved("VirtualMachinePool"),
    "vm-priorityclass.yaml": ("vm", ""),
    "vm-windows-clarge-windows.yaml": ("vm", ""),
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
    "windows.yaml": ("refused", "spec.devices.preferredTPM: Unsupported value: vmplane cannot honour"),
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
        if outcome == "accepted":
            assert "instancetype.kubevirt.io/" in applied.stdout
            return
        vmi = applied.stdout.split("/", 1)[1].split()[0]
        phase, why = _settled(api_server, vmi)
        assert phase == "Running", why
    finally:
        api_server.kubectl(
            "delete", "-f", path, "--ignore-not-found", "--wait=true", "--timeout=60s", check=False
        )


def _without_memory(manifest: str) -> str:
    """The VM with its template's ``memory.guest`` dropped, which its instance type sets."""
    vm = yaml.safe_load(manifest)
    del vm["spec"]["template"]["spec"]["domain"]["memory"]
    vm["spec"]["runStrategy"] = "Always"
    return yaml.safe_dump(vm)


def test_upstream_instancetype_vm_conflicts_on_guest_memory_as_upstream(api_server: ApiServer) -> None:
    """The example VMs set ``memory.guest`` themselves: with their instance type present, upstream's
    conflict rule refuses them, as KubeVirt's webhook does."""
    api_server.kubectl("apply", "-f", str(EXAMPLES / "csmall.yaml"))
    try:
        applied = api_server.kubectl("apply", "-f", str(EXAMPLES / "vm-cirros-csmall.yaml"), check=False)
        assert applied.returncode != 0
        message = "VM field(s) spec.template.spec.domain.memory.guest conflicts with selected instance type"
        assert message in applied.stderr
    finally:
        api_server.kubectl("delete", "-f", str(EXAMPLES / "csmall.yaml"), "--ignore-not-found", check=False)


@pytest.mark.parametrize(
    ("sizing", "vm", "cpu", "memory"),
    [
        (("clarge.yaml",), "vm-cirros-clarge.yaml", 4, "2Gi"),
        (("cluster-csmall.yaml",), "vm-cirros-cluster-csmall.yaml", 1, "128Mi"),
        (("clarge.yaml", "virtio.yaml"), "vm-cirros-clarge-virtio.yaml", 4, "2Gi"),
    ],
)
def test_upstream_instancetype_vm_runs_with_its_instancetype_size(
    api_server: ApiServer, sizing: tuple[str, ...], vm: str, cpu: int, memory: str
) -> None:
    for name in sizing:
        api_server.kubectl("apply", "-f", str(EXAMPLES / name))
    manifest = _without_memory((EXAMPLES / vm).read_text())
    vm_name = yaml.safe_load(manifest)["metadata"]["name"]
    try:
        api_server.kubectl("apply", "-f", "-", stdin=manifest)
        phase, why = _settled(api_server, vm_name)
        assert phase == "Running", why
        domain = json.loads(api_server.kubectl("get", "vmi", vm_name, "-o", "json").stdout)["spec"]["domain"]
        assert (domain["cpu"]["sockets"], domain["memory"]["guest"]) == (cpu, memory)
        if "virtio.yaml" in sizing:
            assert {d["disk"].get("bus") for d in domain["devices"]["disks"]} == {"virtio"}
    finally:
        api_server.kubectl(
            "delete", "vm", vm_name, "--ignore-not-found", "--wait=true", "--timeout=60s", check=False
        )
        for name in sizing:
            api_server.kubectl("delete", "-f", str(EXAMPLES / name), "--ignore-not-found", check=False)
