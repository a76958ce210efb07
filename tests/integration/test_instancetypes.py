"""Instance types and preferences against ``vmplane serve`` (simulated guests), driven by kubectl.

A VM sized by an instance type runs with the instance type's CPU and memory, keeps the snapshot it
first used when the instance type is edited, and follows a switch of ``spec.instancetype.name`` as
any other change: live within its headroom under ``LiveUpdate``, pending (``source: instancetype``)
above it or under ``Stage``, cleared by switching back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_api_support import ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(180)]
__all__ = ["api_server"]

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "upstream" / "kubevirt-examples"

INSTANCETYPE = """\
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata: {{name: {name}}}
spec:
  cpu: {{guest: {cpu}}}
  memory: {{guest: {memory}}}
"""

VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: {name}}}
spec:
  runStrategy: Always
  instancetype: {{kind: VirtualMachineInstancetype, name: {instancetype}}}
  template:
    spec:
      domain:
        devices: {{}}
{extra}      terminationGracePeriodSeconds: 0
"""


def _vm(name: str, instancetype: str, extra: str = "") -> str:
    return VM.format(name=name, instancetype=instancetype, extra=extra)


def _get(server: ApiServer, *what: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(server.kubectl("get", *what, "-o", "json").stdout)
    return result


def _until(server: ApiServer, what: tuple[str, ...], ok: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = server.kubectl("get", *what, "-o", "json", check=False)
        obj = json.loads(result.stdout) if result.returncode == 0 else {}
        if obj and ok(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: condition not reached; last seen {obj}")
        time.sleep(0.2)


def _running(server: ApiServer, name: str) -> dict[str, Any]:
    return _until(server, ("vmi", name), lambda o: (o.get("status") or {}).get("phase") == "Running")


def _pending(vm: dict[str, Any]) -> list[dict[str, Any]]:
    return list((vm.get("status") or {}).get("pendingChanges") or [])


def _strategy(server: ApiServer, strategy: str) -> None:
    patch = json.dumps({"spec": {"configuration": {"vmRolloutStrategy": strategy}}})
    server.kubectl("-n", "kubevirt", "patch", "kubevirt", "kubevirt", "--type", "merge", "-p", patch)


def test_upstream_instancetype_is_listed_with_its_size(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", str(EXAMPLES / "clarge.yaml"))
    table = api_server.kubectl("get", "vminstancetype", "clarge").stdout
    assert table.split("\n")[0].split()[:3] == ["NAME", "CPU", "MEMORY"]
    assert table.split("\n")[1].split()[:3] == ["clarge", "4", "2Gi"]


def test_kubectl_explains_the_instancetype_kinds(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "virtualmachineclusterinstancetype.spec.cpu").stdout
    assert "guest" in explained


def test_vm_runs_with_the_size_its_instancetype_gives(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-run", cpu=2, memory="256Mi"))
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-it-run", "it-run"))
    vmi = _running(api_server, "vm-it-run")
    domain = vmi["spec"]["domain"]
    assert (domain["cpu"]["sockets"], domain["cpu"]["cores"], domain["cpu"]["threads"]) == (2, 1, 1)
    assert domain["memory"]["guest"] == "256Mi"


def test_first_use_stores_a_snapshot_named_in_the_status(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-snap", cpu=1, memory="128Mi"))
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-it-snap", "it-snap"))
    vm = _until(api_server, ("vm", "vm-it-snap"), lambda o: "instancetypeRef" in (o.get("status") or {}))
    instancetype = _get(api_server, "vminstancetype", "it-snap")
    uid = instancetype["metadata"]["uid"]
    ref = vm["status"]["instancetypeRef"]
    expected = f"vm-it-snap-it-snap-v1beta1-{uid}-1"
    assert ref == {
        "kind": "VirtualMachineInstancetype",
        "name": "it-snap",
        "controllerRevisionRef": {"name": expected},
    }
    revision = _get(api_server, "controllerrevision", expected)
    assert revision["data"]["spec"]["cpu"] == {"guest": 1}
    assert revision["metadata"]["ownerReferences"][0]["name"] == "vm-it-snap"


def test_editing_an_instancetype_does_not_change_a_running_vm(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-edit", cpu=1, memory="128Mi"))
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-it-edit", "it-edit"))
    _running(api_server, "vm-it-edit")
    _until(api_server, ("vm", "vm-it-edit"), lambda o: "instancetypeRef" in (o.get("status") or {}))
    api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-edit", cpu=3, memory="512Mi"))
    api_server.kubectl("annotate", "vm", "vm-it-edit", "touched=yes")  # make the controller look again
    time.sleep(1.0)
    vm = _get(api_server, "vm", "vm-it-edit")
    assert _pending(vm) == []
    assert _get(api_server, "vmi", "vm-it-edit")["spec"]["domain"]["cpu"]["sockets"] == 1


def test_vm_may_not_set_what_its_instancetype_sets(api_server: ApiServer) -> None:
    api_server.kubectl(
        "apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-conflict", cpu=1, memory="128Mi")
    )
    extra = "        cpu: {sockets: 2}\n"
    result = api_server.kubectl(
        "apply", "-f", "-", stdin=_vm("vm-it-conflict", "it-conflict", extra), check=False
    )
    assert result.returncode != 0
    assert (
        "VM field(s) spec.template.spec.domain.cpu.sockets conflicts with selected instance type"
        in result.stderr
    )


def test_instancetype_field_vmplane_cannot_honour_is_refused_by_name(api_server: ApiServer) -> None:
    manifest = (
        INSTANCETYPE.format(name="it-gpu", cpu=1, memory="128Mi") + "  gpus: [{name: g, deviceName: x}]\n"
    )
    result = api_server.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert "spec.gpus: Unsupported value: vmplane cannot honour this field" in result.stderr


def test_vm_waits_for_its_instancetype_to_exist(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-it-late", "it-late"))
    time.sleep(0.5)
    assert api_server.kubectl("get", "vmi", "vm-it-late", check=False).returncode != 0
    api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-late", cpu=1, memory="128Mi"))
    _running(api_server, "vm-it-late")


def _switch(server: ApiServer, vm: str, instancetype: str) -> None:
    patch = json.dumps({"spec": {"instancetype": {"name": instancetype}}})
    server.kubectl("patch", "vm", vm, "--type", "merge", "-p", patch)


@pytest.fixture
def switchable(api_server: ApiServer) -> Any:
    for name, cpu, memory in (("sw-small", 1, "1Gi"), ("sw-medium", 2, "2Gi"), ("sw-huge", 8, "8Gi")):
        api_server.kubectl("apply", "-f", "-", stdin=INSTANCETYPE.format(name=name, cpu=cpu, memory=memory))
    yield
    _strategy(api_server, "Stage")


def test_switch_under_live_update_hotplugs_within_headroom(api_server: ApiServer, switchable: None) -> None:
    _strategy(api_server, "LiveUpdate")
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-sw-live", "sw-small"))
    _running(api_server, "vm-sw-live")
    _switch(api_server, "vm-sw-live", "sw-medium")
    vmi = _until(api_server, ("vmi", "vm-sw-live"), lambda o: o["spec"]["domain"]["cpu"]["sockets"] == 2)
    assert vmi["spec"]["domain"]["memory"]["guest"] == "2Gi"
    assert _pending(_get(api_server, "vm", "vm-sw-live")) == []


def test_switch_above_headroom_is_pending_from_the_instancetype(
    api_server: ApiServer, switchable: None
) -> None:
    _strategy(api_server, "LiveUpdate")
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-sw-big", "sw-small"))
    _running(api_server, "vm-sw-big")
    _switch(api_server, "vm-sw-big", "sw-huge")
    vm = _until(api_server, ("vm", "vm-sw-big"), lambda o: bool(_pending(o)))
    sockets = next(p for p in _pending(vm) if p["path"] == "spec.template.spec.domain.cpu.sockets")
    assert (sockets["running"], sockets["desired"], sockets["source"]) == (1, 8, "instancetype")
    _switch(api_server, "vm-sw-big", "sw-small")
    _until(api_server, ("vm", "vm-sw-big"), lambda o: not _pending(o))


def test_switch_under_stage_is_pending_until_switched_back(api_server: ApiServer, switchable: None) -> None:
    _strategy(api_server, "Stage")
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-sw-stage", "sw-small"))
    _running(api_server, "vm-sw-stage")
    _switch(api_server, "vm-sw-stage", "sw-medium")
    vm = _until(api_server, ("vm", "vm-sw-stage"), lambda o: bool(_pending(o)))
    assert {p["source"] for p in _pending(vm)} == {"instancetype"}
    assert _get(api_server, "vmi", "vm-sw-stage")["spec"]["domain"]["cpu"]["sockets"] == 1
    _switch(api_server, "vm-sw-stage", "sw-small")
    _until(api_server, ("vm", "vm-sw-stage"), lambda o: not _pending(o))


def test_default_cluster_instancetypes_and_preferences_are_installed(api_server: ApiServer) -> None:
    rows = api_server.kubectl("get", "vmcf", "--no-headers").stdout.splitlines()
    sizes = {row.split()[0]: (row.split()[1], row.split()[2]) for row in rows}
    assert sizes["u1.nano"] == ("1", "512Mi")
    assert sizes["u1.medium"] == ("1", "4Gi")
    assert sizes["u1.2xlarge"] == ("8", "32Gi")
    preferences = api_server.kubectl("get", "vmcp", "-o", "name").stdout.split()
    assert "virtualmachineclusterpreference.instancetype.kubevirt.io/fedora" in preferences


def test_create_vm_applies_a_vm_sized_by_a_default_instancetype(api_server: ApiServer) -> None:
    created = api_server.vmplane(
        "create", "vm", "vm-created", "--instancetype", "u1.nano", "--preference", "linux", "--apply"
    )
    assert created.stdout.strip() == "virtualmachine.kubevirt.io/vm-created created"
    domain = _running(api_server, "vm-created")["spec"]["domain"]
    assert (domain["cpu"]["sockets"], domain["memory"]["guest"]) == (1, "512Mi")


def test_create_vm_refuses_an_instancetype_below_the_preference_requirements(api_server: ApiServer) -> None:
    result = api_server.vmplane(
        "create",
        "vm",
        "vm-too-small",
        "--instancetype",
        "u1.nano",
        "--preference",
        "fedora",
        "--apply",
        check=False,
    )
    assert result.returncode == 1
    expected = "insufficient Memory resources of 512Mi provided by instance type, preference requires 2Gi"
    assert expected in result.stderr


def test_create_vm_prints_what_kubectl_applies(api_server: ApiServer) -> None:
    printed = api_server.vmplane(
        "create", "vm", "vm-printed", "--instancetype", "virtualmachineclusterinstancetype/u1.micro"
    )
    assert "created" in api_server.kubectl("apply", "-f", "-", stdin=printed.stdout).stdout
    assert _running(api_server, "vm-printed")["spec"]["domain"]["memory"]["guest"] == "1Gi"


def test_pending_plan_and_revert_of_an_instancetype_switch(
    api_server: ApiServer, switchable: None, tmp_path: Path
) -> None:
    _strategy(api_server, "Stage")
    api_server.kubectl("apply", "-f", "-", stdin=_vm("vm-sw-cli", "sw-small"))
    _running(api_server, "vm-sw-cli")
    switched = _get(api_server, "vm", "vm-sw-cli")
    switched["spec"]["instancetype"]["name"] = "sw-medium"
    for key in ("resourceVersion", "managedFields"):
        switched["metadata"].pop(key, None)
    manifest = tmp_path / "switched.json"
    manifest.write_text(json.dumps(switched))
    planned = api_server.vmplane("plan", "-f", str(manifest), "-o", "json")
    assert {p["source"] for p in json.loads(planned.stdout)["pending"]} == {"instancetype"}
    _switch(api_server, "vm-sw-cli", "sw-medium")
    _until(api_server, ("vm", "vm-sw-cli"), lambda o: bool(_pending(o)))
    shown = json.loads(api_server.vmplane("pending", "vm-sw-cli", "-o", "json").stdout)
    memory = next(p for p in shown["pending"] if p["path"] == "spec.template.spec.domain.memory.guest")
    assert (memory["running"], memory["desired"], memory["source"]) == ("1Gi", "2Gi", "instancetype")
    api_server.vmplane("revert", "vm-sw-cli")
    assert _get(api_server, "vm", "vm-sw-cli")["spec"]["instancetype"]["name"] == "sw-small"
    _until(api_server, ("vm", "vm-sw-cli"), lambda o: not _pending(o))


def test_preferred_machine_type_this_host_lacks_is_refused_on_the_vm(api_server: ApiServer) -> None:
    preference = """\
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachinePreference
metadata: {name: old-machine}
spec: {machine: {preferredMachineType: pc-q35-1.0}}
"""
    api_server.kubectl("apply", "-f", "-", stdin=preference)
    api_server.kubectl(
        "apply", "-f", "-", stdin=INSTANCETYPE.format(name="it-machine", cpu=1, memory="128Mi")
    )
    vm = _vm("vm-old-machine", "it-machine").replace(
        "  template:", "  preference: {kind: VirtualMachinePreference, name: old-machine}\n  template:"
    )
    result = api_server.kubectl("apply", "-f", "-", stdin=vm, check=False)
    assert result.returncode != 0
    assert "spec.template.spec.domain.machine.type is not supported: pc-q35-1.0" in result.stderr
