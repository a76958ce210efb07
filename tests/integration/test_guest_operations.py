"""pause, unpause, reset and soft-reboot against ``vmplane serve --hypervisor simulated``.

The requests go through ``vmplane pause|unpause|reset|soft-reboot`` and the ``subresources.kubevirt.io``
endpoints; what the guest became is read back with kubectl (the VMI's ``Paused`` condition, the VM's
``printableStatus``) and from the events the node agent records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_api_support import ApiServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(180)]

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices: {{}}
        memory:
          guest: 128Mi
      terminationGracePeriodSeconds: 0
"""
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    started = start_server(tmp_path_factory.mktemp("guest-ops"))
    try:
        yield started
    finally:
        assert stop_server(started) == 0


def _get(server: ApiServer, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(server.kubectl("get", kind, name, "-o", "json").stdout)
    return obj


def _condition(vmi: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in vmi["status"].get("conditions") or () if c["type"] == type_), None)


def _eventually(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def _running_vm(server: ApiServer, name: str) -> dict[str, Any]:
    server.kubectl("apply", "-f", "-", stdin=VM.format(name=name))
    return _eventually(
        f"{name} Running",
        lambda: (vmi := _get_or_none(server, name)) is not None
        and vmi.get("status", {}).get("phase") == "Running"
        and vmi,
    )


def _get_or_none(server: ApiServer, name: str) -> dict[str, Any] | None:
    result = server.kubectl("get", "vmi", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _event_reasons(server: ApiServer, name: str) -> list[str]:
    events = json.loads(
        server.kubectl(
            "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
        ).stdout
    )
    return [e["reason"] for e in events["items"]]


def test_pause_sets_the_paused_condition_and_the_vm_prints_paused(server: ApiServer) -> None:
    _running_vm(server, "pausing")
    done = server.vmplane("pause", "vm", "pausing", check=False)
    assert done.returncode == 0, done.stderr
    assert "VM pausing was scheduled to pause" in done.stdout
    paused = _eventually("Paused condition", lambda: _condition(_get(server, "vmi", "pausing"), "Paused"))
    assert (paused["status"], paused["reason"]) == ("True", "PausedByUser")
    _eventually(
        "printableStatus Paused",
        lambda: _get(server, "vm", "pausing")["status"]["printableStatus"] == "Paused",
    )
    assert "Paused" in _event_reasons(server, "pausing")


def test_pausing_a_paused_vmi_is_refused_as_upstream(server: ApiServer) -> None:
    _running_vm(server, "twice")
    assert server.vmplane("pause", "vmi", "twice", check=False).returncode == 0
    _eventually("Paused condition", lambda: _condition(_get(server, "vmi", "twice"), "Paused"))
    again = server.vmplane("pause", "vmi", "twice", check=False)
    assert again.returncode == 1
    assert "VMI is already paused" in again.stderr


def test_unpause_clears_the_paused_condition(server: ApiServer) -> None:
    _running_vm(server, "resuming")
    assert server.vmplane("pause", "vm", "resuming", check=False).returncode == 0
    _eventually("Paused condition", lambda: _condition(_get(server, "vmi", "resuming"), "Paused"))
    assert server.vmplane("unpause", "vm", "resuming", check=False).returncode == 0
    _eventually("no Paused condition", lambda: _condition(_get(server, "vmi", "resuming"), "Paused") is None)
    _eventually(
        "printableStatus Running",
        lambda: _get(server, "vm", "resuming")["status"]["printableStatus"] == "Running",
    )


def test_unpausing_a_running_vmi_is_refused_as_upstream(server: ApiServer) -> None:
    _running_vm(server, "not-paused")
    status, body, _ = server.request("PUT", f"{SUBRESOURCES}/not-paused/unpause")
    assert (status, body["reason"], body["message"]) == (409, "Conflict", "VMI is not paused")


def test_reset_reboots_the_guest_in_the_same_vmi(server: ApiServer) -> None:
    uid = _running_vm(server, "resetting")["metadata"]["uid"]
    assert server.vmplane("reset", "vm", "resetting", check=False).returncode == 0
    _eventually("a Reset event", lambda: "Reset" in _event_reasons(server, "resetting"))
    vmi = _get(server, "vmi", "resetting")
    assert (vmi["metadata"]["uid"], vmi["status"]["phase"]) == (uid, "Running")


def test_soft_reboot_of_a_paused_vmi_is_refused_as_upstream(server: ApiServer) -> None:
    _running_vm(server, "soft")
    assert server.vmplane("pause", "vm", "soft", check=False).returncode == 0
    _eventually("Paused condition", lambda: _condition(_get(server, "vmi", "soft"), "Paused"))
    refused = server.vmplane("soft-reboot", "vm", "soft", check=False)
    assert (refused.returncode, "VMI is paused" in refused.stderr) == (1, True)
    assert server.vmplane("unpause", "vm", "soft", check=False).returncode == 0
    _eventually("no Paused condition", lambda: _condition(_get(server, "vmi", "soft"), "Paused") is None)
    assert server.vmplane("soft-reboot", "vm", "soft", check=False).returncode == 0
    _eventually("a SoftRebooted event", lambda: "SoftRebooted" in _event_reasons(server, "soft"))


def test_guest_operations_on_a_missing_vmi_are_not_found(server: ApiServer) -> None:
    status, body, _ = server.request("PUT", f"{SUBRESOURCES}/nowhere/pause")
    assert (status, body["reason"]) == (404, "NotFound")


def test_a_dry_run_pause_checks_and_changes_nothing(server: ApiServer) -> None:
    _running_vm(server, "dry")
    status, _, _ = server.request("PUT", f"{SUBRESOURCES}/dry/pause", body={"dryRun": ["All"]})
    assert status == 202
    time.sleep(1.0)  # the agent acts within ~0.1 s of a request; a dry run must leave none
    assert _condition(_get(server, "vmi", "dry"), "Paused") is None
    status, body, _ = server.request("PUT", f"{SUBRESOURCES}/dry/pause", body={"dryRun": ["Some"]})
    assert (status, body["reason"]) == (400, "BadRequest")
    assert "dryRun" in body["message"]


def test_an_unknown_guest_operation_is_not_found(server: ApiServer) -> None:
    status, _, _ = server.request("PUT", f"{SUBRESOURCES}/dry/explode")
    assert status == 404


@pytest.mark.parametrize("query", ["guestosinfo", "userlist", "filesystemlist"])
def test_guest_agent_queries_answer_as_upstream_without_an_agent(server: ApiServer, query: str) -> None:
    _running_vm(server, "no-agent")
    status, body, _ = server.request("GET", f"{SUBRESOURCES}/no-agent/{query}")
    assert (status, body["reason"], body["message"]) == (
        409,
        "Conflict",
        "VMI does not have guest agent connected",
    )
