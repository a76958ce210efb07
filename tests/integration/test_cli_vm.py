"""The virtctl-like CLI against a running ``vmplane serve``: start, stop, restart, pending, revert, plan."""

from __future__ import annotations

import json

import pytest
import yaml
from test_api_support import SMALL_VM, ApiServer, api_server

__all__ = ["api_server"]

pytestmark = pytest.mark.requires("kubectl")


def test_start_with_wait_brings_a_halted_vm_to_running(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="cli-start", run_strategy="Halted"))
    api_server.vmplane("start", "cli-start", "--wait", "--timeout", "60")
    status = api_server.kubectl("get", "vm", "cli-start", "-o", "jsonpath={.status.printableStatus}").stdout
    assert status == "Running"


def test_stop_with_wait_leaves_no_vmi(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="cli-stop", run_strategy="Always"))
    api_server.kubectl(
        "wait", "vm", "cli-stop", "--for=jsonpath={.status.printableStatus}=Running", "--timeout=60s"
    )
    api_server.vmplane("stop", "cli-stop", "--wait", "--timeout", "60")
    assert api_server.kubectl("get", "vmi", "cli-stop", check=False).returncode != 0


def test_restart_of_a_halted_vm_fails_with_upstreams_message(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="cli-halted", run_strategy="Halted"))
    result = api_server.vmplane("restart", "cli-halted", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: RunStategy Halted does not support manual restart requests"


def test_pending_lists_changes_and_revert_clears_them(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="cli-pending", run_strategy="Always"))
    api_server.kubectl(
        "wait", "vm", "cli-pending", "--for=jsonpath={.status.printableStatus}=Running", "--timeout=60s"
    )
    api_server.kubectl(
        "patch",
        "vm",
        "cli-pending",
        "--type",
        "merge",
        "-p",
        '{"spec":{"template":{"spec":{"hostname":"renamed"}}}}',
    )
    api_server.kubectl("wait", "vm", "cli-pending", "--for=condition=RestartRequired", "--timeout=60s")
    table = api_server.vmplane("pending", "cli-pending").stdout
    assert "spec.template.spec.hostname" in table
    assert "NonLiveUpdatableChange" in table
    api_server.vmplane("revert", "cli-pending")
    generation = api_server.kubectl(
        "get", "vm", "cli-pending", "-o", "jsonpath={.metadata.generation}"
    ).stdout
    # Converged again: the controller has seen the reverted generation and nothing is pending.
    api_server.kubectl(
        "wait",
        "vm",
        "cli-pending",
        f"--for=jsonpath={{.status.observedGeneration}}={generation}",
        "--timeout=60s",
    )
    assert "No changes" in api_server.vmplane("pending", "cli-pending").stdout


def test_plan_against_the_server_shows_pending_changes_without_storing(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="cli-plan", run_strategy="Always"))
    api_server.kubectl(
        "wait", "vm", "cli-plan", "--for=jsonpath={.status.printableStatus}=Running", "--timeout=60s"
    )
    manifest = api_server.home / "plan.yaml"
    manifest.write_text(
        SMALL_VM.format(name="cli-plan", run_strategy="Always").replace("sockets: 1", "sockets: 2")
    )
    # The VM's spec and generation, not the store's revision: status goes on being written meanwhile.
    stored = [
        "get",
        "vm",
        "cli-plan",
        "-o",
        "jsonpath={.metadata.generation}/{.spec.template.spec.domain.cpu}",
    ]
    before = api_server.kubectl(*stored).stdout
    output = api_server.vmplane("plan", "-f", str(manifest)).stdout
    assert "spec.template.spec.domain.cpu.sockets" in output
    assert "StagedByStrategy" in output
    assert api_server.kubectl(*stored).stdout == before


def test_unknown_vm_is_one_clear_error_line(api_server: ApiServer) -> None:
    result = api_server.vmplane("pending", "no-such-vm", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: virtualmachines.kubevirt.io "no-such-vm" not found'


def _pending_vm(server: ApiServer, name: str, namespace: str = "default") -> None:
    manifest = SMALL_VM.format(name=name, run_strategy="Always").replace(
        f"name: {name}", f"name: {name}\n  namespace: {namespace}"
    )
    server.kubectl("apply", "-f", "-", stdin=manifest)
    server.kubectl(
        "-n",
        namespace,
        "wait",
        "vm",
        name,
        "--for=jsonpath={.status.printableStatus}=Running",
        "--timeout=60s",
    )


def test_pending_as_json_lists_every_change_unabridged(api_server: ApiServer) -> None:
    _pending_vm(api_server, "cli-pending-json")
    api_server.kubectl(
        "patch",
        "vm",
        "cli-pending-json",
        "--type",
        "merge",
        "-p",
        '{"spec":{"template":{"spec":{"hostname":"x"}}}}',
    )
    api_server.kubectl("wait", "vm", "cli-pending-json", "--for=condition=RestartRequired", "--timeout=60s")
    document = json.loads(api_server.vmplane("pending", "cli-pending-json", "-o", "json").stdout)
    assert document["name"] == "cli-pending-json"
    assert document["restartRequired"]["reason"] == "NonLiveUpdatableChange"
    [change] = [c for c in document["pending"] if c["path"] == "spec.template.spec.hostname"]
    assert (change["running"], change["desired"], change["source"]) == (None, "x", "template")


def test_plan_from_a_file_uses_the_manifests_namespace(api_server: ApiServer) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cli-ns"}}
    assert api_server.request("POST", "/api/v1/namespaces", body=namespace)[0] == 201
    _pending_vm(api_server, "cli-plan-ns", namespace="cli-ns")
    manifest = api_server.home / "plan-ns.yaml"
    manifest.write_text(
        SMALL_VM.format(name="cli-plan-ns", run_strategy="Always")
        .replace("name: cli-plan-ns", "name: cli-plan-ns\n  namespace: cli-ns")
        .replace("sockets: 1", "sockets: 2")
    )
    document = yaml.safe_load(api_server.vmplane("plan", "-f", str(manifest), "-o", "yaml").stdout)
    assert (document["namespace"], document["exists"]) == ("cli-ns", True)
    assert [c["path"] for c in document["pending"]] == ["spec.template.spec.domain.cpu.sockets"]


def test_plan_from_a_file_refuses_a_conflicting_namespace_flag(api_server: ApiServer) -> None:
    manifest = api_server.home / "plan-conflict.yaml"
    manifest.write_text(
        SMALL_VM.format(name="x", run_strategy="Always").replace("name: x", "name: x\n  namespace: a")
    )
    result = api_server.vmplane("plan", "-f", str(manifest), "-n", "b", check=False)
    assert result.returncode == 2
    assert 'the namespace from the provided object "a" does not match the namespace "b"' in result.stderr
