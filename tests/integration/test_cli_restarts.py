"""``vmplane restarts plan`` and ``vmplane restart --pending`` against a running ``vmplane serve``,
with the MaintenanceWindow applied, listed and refused through unmodified kubectl."""

from __future__ import annotations

import json

import pytest
from test_api_support import ApiServer, api_server

__all__ = ["api_server"]

pytestmark = pytest.mark.requires("kubectl")

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  labels: {{group: {group}}}
  annotations: {{vmplane.io/restart-approval: {approval}}}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 1Gi}}
        devices: {{}}
      terminationGracePeriodSeconds: 0
"""

WINDOW = """\
apiVersion: vmplane.io/v1alpha1
kind: MaintenanceWindow
metadata:
  name: {name}
spec:
  schedule: {{days: [Sat, Sun], start: "02:00", end: "05:00", timeZone: Europe/Berlin}}
  selector: {{matchLabels: {{group: {group}}}}}
  maxUnavailable: {max_unavailable}
"""


def pending_vms(server: ApiServer, group: str, count: int, approval: str = "Window") -> list[str]:
    names = [f"{group}-{i}" for i in range(count)]
    for name in names:
        server.kubectl("apply", "-f", "-", stdin=VM.format(name=name, group=group, approval=approval))
    for name in names:
        server.kubectl("wait", "vm", name, "--for=condition=Ready", "--timeout=60s")
        server.kubectl(
            "patch",
            "vm",
            name,
            "--type",
            "merge",
            "-p",
            '{"spec":{"template":{"spec":{"domain":{"cpu":{"cores":2}}}}}}',
        )
    for name in names:
        server.kubectl("wait", "vm", name, "--for=condition=RestartRequired", "--timeout=60s")
    return names


def test_restarts_plan_lists_the_next_windows_batches_with_their_pending_changes(
    api_server: ApiServer,
) -> None:
    pending_vms(api_server, "plan", 3)
    api_server.kubectl(
        "apply", "-f", "-", stdin=WINDOW.format(name="weekend", group="plan", max_unavailable=2)
    )
    listed = api_server.kubectl("get", "mw").stdout
    assert "weekend" in listed
    assert "Sat,Sun 02:00-05:00 Europe/Berlin" in listed
    document = json.loads(api_server.vmplane("restarts", "plan", "--window", "weekend", "-o", "json").stdout)
    assert document["window"] == "weekend"
    assert document["maxUnavailable"] == 2
    assert [[entry["vm"] for entry in batch] for batch in document["batches"]] == [
        ["default/plan-0", "default/plan-1"],
        ["default/plan-2"],
    ]
    assert document["batches"][0][0]["pendingChanges"] == ["spec.template.spec.domain.cpu.cores"]
    table = api_server.vmplane("restarts", "plan", "--window", "weekend").stdout
    assert "MaintenanceWindow weekend" in table
    assert "default/plan-2" in table


def test_restarts_plan_of_an_unknown_window_fails_naming_it(api_server: ApiServer) -> None:
    result = api_server.vmplane("restarts", "plan", "--window", "nope", check=False)
    assert (result.returncode, result.stderr.strip()) == (1, 'error: MaintenanceWindow "nope" not found')


def test_kubectl_apply_of_an_invalid_window_is_refused_naming_the_field(api_server: ApiServer) -> None:
    manifest = WINDOW.format(name="bad", group="x", max_unavailable='"150%"')
    result = api_server.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert "spec.maxUnavailable" in result.stderr


def test_restart_pending_restarts_every_pending_vm_in_gated_batches(api_server: ApiServer) -> None:
    names = pending_vms(api_server, "roll", 3, approval="Manual")
    before = {
        name: api_server.kubectl("get", "vmi", name, "-o", "jsonpath={.metadata.uid}").stdout
        for name in names
    }
    result = api_server.vmplane(
        "restart", "--pending", "-l", "group=roll", "--max-unavailable", "2", "--wait", "--timeout", "60"
    )
    assert "Restarted 3 VM(s) in 2 batch(es) of at most 2" in result.stdout
    for name in names:
        uid = api_server.kubectl("get", "vmi", name, "-o", "jsonpath={.metadata.uid}").stdout
        assert uid not in ("", before[name])
        pending = api_server.kubectl("get", "vm", name, "-o", "jsonpath={.status.pendingChanges}").stdout
        assert pending == ""


def test_restart_needs_a_vm_or_pending(api_server: ApiServer) -> None:
    result = api_server.vmplane("restart", check=False)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "error: restart needs a VM or --pending (not both)",
    )


def test_kubectl_discovers_maintenance_windows_with_their_schema(api_server: ApiServer) -> None:
    resources = api_server.kubectl("api-resources", "--api-group=vmplane.io", "--no-headers").stdout.split()
    assert resources[:5] == ["maintenancewindows", "mw", "vmplane.io/v1alpha1", "false", "MaintenanceWindow"]
    explained = api_server.kubectl("explain", "maintenancewindows.spec.schedule").stdout
    assert "timeZone" in explained
