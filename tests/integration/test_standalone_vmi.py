"""Standalone VMIs and VM ownership against ``vmplane serve --hypervisor simulated``, with kubectl.

A VMI created directly runs until deleted; the VM controller acts only on the VMI it controls (an
ownerReference with ``controller: true`` and the VM's uid), adopts an uncontrolled VMI of its name
as upstream's controller-ref manager does, and leaves a VMI running when the VM is deleted with
``--cascade=orphan``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_api_support import ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(180)]
__all__ = ["api_server"]

# KubeVirt's examples/vmi-ephemeral.yaml (the cirros VMI; Apache-2.0), kubevirt/kubevirt at
# d923fdb815cd2016ddaebdaaa51db04133576d72, with only its name changed per test.
EPHEMERAL_VMI = """\
---
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  labels:
    special: vmi-ephemeral
  name: {name}
spec:
  domain:
    devices:
      disks:
      - disk:
          bus: virtio
        name: containerdisk
    memory:
      guest: 128Mi
    resources: {{}}
  terminationGracePeriodSeconds: 0
  volumes:
  - containerDisk:
      image: registry:5000/kubevirt/cirros-container-disk-demo:devel
    name: containerdisk
"""

# A VM whose template is the VMI above, so that adopting it leaves nothing to roll out.
EPHEMERAL_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: {strategy}
  template:
    metadata:
      labels:
        special: vmi-ephemeral
    spec:
      domain:
        devices:
          disks:
          - disk:
              bus: virtio
            name: containerdisk
        memory:
          guest: 128Mi
        resources: {{}}
      terminationGracePeriodSeconds: 0
      volumes:
      - containerDisk:
          image: registry:5000/kubevirt/cirros-container-disk-demo:devel
        name: containerdisk
"""

STILL_RUNNING_FOR = 5.0


def _apply(server: ApiServer, manifest: str) -> str:
    return server.kubectl("apply", "-f", "-", stdin=manifest).stdout


def _get(server: ApiServer, kind: str, name: str) -> dict[str, Any] | None:
    result = server.kubectl("get", kind, name, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def _wait_running(server: ApiServer, name: str) -> dict[str, Any]:
    server.kubectl("wait", "vmi", name, "--for=jsonpath={.status.phase}=Running", "--timeout=60s", timeout=90)
    vmi = _get(server, "vmi", name)
    assert vmi is not None
    return vmi


def _wait_for(server: ApiServer, what: str, predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _controller_refs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller") is True]


def _still_running(server: ApiServer, name: str, uid: str) -> dict[str, Any]:
    """The VMI after ``STILL_RUNNING_FOR`` seconds, asserted to be the same one, Running, not deleted."""
    time.sleep(STILL_RUNNING_FOR)  # the controller acted within ~1 s when it deleted standalone VMIs
    vmi = _get(server, "vmi", name)
    assert vmi is not None, f"VMI {name} was deleted"
    assert vmi["metadata"]["uid"] == uid
    assert vmi["status"]["phase"] == "Running"
    assert "deletionTimestamp" not in vmi["metadata"]
    return vmi


def test_a_standalone_vmi_from_kubevirts_examples_runs_until_deleted(api_server: ApiServer) -> None:
    assert "created" in _apply(api_server, EPHEMERAL_VMI.format(name="standalone"))
    running = _wait_running(api_server, "standalone")
    assert running["status"]["nodeName"]
    assert "vmplane.io/machine" in running["metadata"]["finalizers"]
    _still_running(api_server, "standalone", running["metadata"]["uid"])

    deleted = api_server.kubectl("delete", "vmi", "standalone", "--timeout=60s", timeout=90)
    assert 'virtualmachineinstance.kubevirt.io "standalone" deleted' in deleted.stdout
    assert _get(api_server, "vmi", "standalone") is None


def test_the_spec_of_a_standalone_vmi_cannot_be_changed(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VMI.format(name="immutable"))
    patch = json.dumps({"spec": {"domain": {"memory": {"guest": "256Mi"}}}})
    refused = api_server.kubectl("patch", "vmi", "immutable", "--type=merge", "-p", patch, check=False)
    assert refused.returncode != 0
    assert "spec: update of VMI object is restricted" in refused.stderr
    vmi = _get(api_server, "vmi", "immutable")
    assert vmi is not None
    assert vmi["spec"]["domain"]["memory"]["guest"] == "128Mi"

    labelled = api_server.kubectl("label", "vmi", "immutable", "team=a")
    assert "labeled" in labelled.stdout
    api_server.kubectl("delete", "vmi", "immutable", "--timeout=60s", timeout=90)


def test_delete_vm_with_cascade_orphan_leaves_its_vmi_running_without_owner(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VM.format(name="orphaned", strategy="Always"))
    running = _wait_running(api_server, "orphaned")
    vm = _get(api_server, "vm", "orphaned")
    assert vm is not None
    assert _controller_refs(running) == [
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": "orphaned",
            "uid": vm["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]

    api_server.kubectl("delete", "vm", "orphaned", "--cascade=orphan", "--timeout=60s", timeout=90)
    assert _get(api_server, "vm", "orphaned") is None
    vmi = _still_running(api_server, "orphaned", running["metadata"]["uid"])
    assert "ownerReferences" not in vmi["metadata"]
    api_server.kubectl("delete", "vmi", "orphaned", "--timeout=60s", timeout=90)


def test_a_vm_created_later_adopts_the_vmi_of_its_name(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VMI.format(name="adoptee"))
    running = _wait_running(api_server, "adoptee")
    _apply(api_server, EPHEMERAL_VM.format(name="adoptee", strategy="Always"))
    vm = _get(api_server, "vm", "adoptee")
    assert vm is not None

    def adopted() -> bool:
        vmi = _get(api_server, "vmi", "adoptee")
        return vmi is not None and [r["uid"] for r in _controller_refs(vmi)] == [vm["metadata"]["uid"]]

    _wait_for(api_server, "the VMI to be adopted", adopted)
    api_server.kubectl("wait", "vm", "adoptee", "--for=condition=Ready", "--timeout=60s", timeout=90)
    vmi = _still_running(api_server, "adoptee", running["metadata"]["uid"])  # no second VMI
    assert _controller_refs(vmi)[0]["kind"] == "VirtualMachine"
    listed = json.loads(api_server.kubectl("get", "vmi", "-o", "json").stdout)["items"]
    assert [v["metadata"]["uid"] for v in listed if v["metadata"]["name"] == "adoptee"] == [
        running["metadata"]["uid"]
    ]

    api_server.kubectl("delete", "vm", "adoptee", "--timeout=60s", timeout=90)
    _wait_for(
        api_server, "the adopted VMI to go with its VM", lambda: _get(api_server, "vmi", "adoptee") is None
    )


def test_default_deletion_of_a_vm_stops_and_removes_its_vmi(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VM.format(name="cascaded", strategy="Always"))
    _wait_running(api_server, "cascaded")
    api_server.kubectl("delete", "vm", "cascaded", "--timeout=60s", timeout=90)
    _wait_for(api_server, "the VMI to go with its VM", lambda: _get(api_server, "vmi", "cascaded") is None)


def test_a_vmi_controlled_by_another_vm_is_not_touched(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VM.format(name="rightful-owner", strategy="Halted"))
    owner = _get(api_server, "vm", "rightful-owner")
    assert owner is not None
    reference = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "name": "rightful-owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    vmi_manifest = EPHEMERAL_VMI.format(name="squatted").replace(
        "  name: squatted\n", "  name: squatted\n  ownerReferences:\n  - " + json.dumps(reference) + "\n"
    )
    _apply(api_server, vmi_manifest)
    running = _wait_running(api_server, "squatted")
    _apply(api_server, EPHEMERAL_VM.format(name="squatted", strategy="Always"))

    vmi = _still_running(api_server, "squatted", running["metadata"]["uid"])
    assert vmi["metadata"]["ownerReferences"] == [reference]
    events = api_server.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=squatted", "-o", "json"
    ).stdout
    assert "not controlled by this VirtualMachine" in events

    api_server.kubectl("delete", "vm", "squatted", "--timeout=60s", timeout=90)
    _still_running(api_server, "squatted", running["metadata"]["uid"])
    api_server.kubectl("delete", "vmi", "squatted", "--timeout=60s", timeout=90)
    api_server.kubectl("delete", "vm", "rightful-owner", "--timeout=60s", timeout=90)


def test_orphan_dependents_true_orphans_like_the_orphan_policy(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VM.format(name="legacy-orphan", strategy="Always"))
    running = _wait_running(api_server, "legacy-orphan")
    path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/legacy-orphan"
    status, body, _ = api_server.request("DELETE", path, body={"orphanDependents": True})
    assert status == 200
    assert "orphan" in body["metadata"]["finalizers"]
    assert body["metadata"]["deletionTimestamp"]
    _wait_for(api_server, "the VM to go", lambda: _get(api_server, "vm", "legacy-orphan") is None)
    vmi = _still_running(api_server, "legacy-orphan", running["metadata"]["uid"])
    assert "ownerReferences" not in vmi["metadata"]
    api_server.kubectl("delete", "vmi", "legacy-orphan", "--timeout=60s", timeout=90)


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        pytest.param(
            {"orphanDependents": "yes"},
            400,
            'orphanDependents: Invalid value: "yes": must be a boolean',
            id="orphanDependents-not-a-boolean",
        ),
        pytest.param(
            {"orphanDependents": True, "propagationPolicy": "Orphan"},
            422,
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "Orphan": '
            "orphanDependents and deletionPropagation cannot be both set",
            id="both-set",
        ),
    ],
)
def test_bad_delete_options_are_refused_and_change_nothing(
    api_server: ApiServer, options: dict[str, Any], code: int, message: str
) -> None:
    _apply(api_server, EPHEMERAL_VM.format(name="kept", strategy="Halted"))
    before = _get(api_server, "vm", "kept")
    path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/kept"
    status, body, _ = api_server.request("DELETE", path, body=options)
    assert (status, body["kind"], body["message"]) == (code, "Status", message)
    after = _get(api_server, "vm", "kept")
    assert after is not None
    assert before is not None
    assert after["metadata"] == before["metadata"]


def test_orphaning_delete_of_a_kind_without_dependents_deletes_it_at_once(api_server: ApiServer) -> None:
    _apply(api_server, EPHEMERAL_VMI.format(name="no-dependents"))
    api_server.kubectl("delete", "vmi", "no-dependents", "--cascade=orphan", "--timeout=60s", timeout=90)
    assert _get(api_server, "vmi", "no-dependents") is None


def test_an_orphaning_deletecollection_leaves_the_vmis_running(api_server: ApiServer) -> None:
    manifest = EPHEMERAL_VM.format(name="collected", strategy="Always").replace(
        "  name: collected\n", "  name: collected\n  labels:\n    batch: orphan-collection\n", 1
    )
    _apply(api_server, manifest)
    running = _wait_running(api_server, "collected")
    path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines?labelSelector=batch%3Dorphan-collection"
    status, body, _ = api_server.request("DELETE", path, body={"propagationPolicy": "Orphan"})
    assert status == 200
    assert [item["metadata"]["name"] for item in body["items"]] == ["collected"]
    _wait_for(api_server, "the VM to go", lambda: _get(api_server, "vm", "collected") is None)
    vmi = _still_running(api_server, "collected", running["metadata"]["uid"])
    assert "ownerReferences" not in vmi["metadata"]
    api_server.kubectl("delete", "vmi", "collected", "--timeout=60s", timeout=90)


def test_a_vmi_with_two_controller_references_is_refused(api_server: ApiServer) -> None:
    refs = [
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": name,
            "uid": name,
            "controller": True,
        }
        for name in ("one", "two")
    ]
    manifest = EPHEMERAL_VMI.format(name="two-controllers").replace(
        "  name: two-controllers\n", "  name: two-controllers\n  ownerReferences: " + json.dumps(refs) + "\n"
    )
    refused = api_server.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert refused.returncode != 0
    assert (
        "metadata.ownerReferences: Invalid value: Only one reference can have Controller set to true. "
        'Found "true" in references for VirtualMachine/one and VirtualMachine/two' in refused.stderr
    )
    assert _get(api_server, "vmi", "two-controllers") is None
