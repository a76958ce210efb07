"""Namespace lifecycle and garbage collection against ``vmplane serve``, driven by kubectl.

A test that needs to watch an intermediate state (a namespace Terminating, an owner waiting in the
foreground) holds the VMI with a finalizer of its own, ``example.com/hold``, and releases it.
"""

from __future__ import annotations

import json

import pytest
from test_api_support import SMALL_VM, ApiServer, api_server

__all__ = ["api_server"]

pytestmark = pytest.mark.requires("kubectl")

HOLD = "example.com/hold"
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def _namespace(server: ApiServer, name: str) -> None:
    server.kubectl("apply", "-f", "-", stdin=NAMESPACE.format(name=name))


def _running_vm(server: ApiServer, namespace: str, name: str = "demo") -> None:
    server.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=SMALL_VM.format(name=name, run_strategy="Always")
    )
    server.kubectl(
        "-n",
        namespace,
        "wait",
        "vm",
        name,
        "--for=jsonpath={.status.printableStatus}=Running",
        "--timeout=60s",
    )


def _hold_vmi(server: ApiServer, namespace: str, name: str = "demo") -> None:
    patch = json.dumps([{"op": "add", "path": "/metadata/finalizers/-", "value": HOLD}])
    server.kubectl("-n", namespace, "patch", "vmi", name, "--type=json", "-p", patch)


def _release_vmi(server: ApiServer, namespace: str, name: str = "demo") -> None:
    current = json.loads(server.kubectl("-n", namespace, "get", "vmi", name, "-o", "json").stdout)
    kept = [f for f in current["metadata"].get("finalizers", []) if f != HOLD]
    patch = json.dumps({"metadata": {"finalizers": kept or None}})
    server.kubectl("-n", namespace, "patch", "vmi", name, "--type=merge", "-p", patch)


def _get(server: ApiServer, *args: str) -> dict[str, object]:
    result = json.loads(server.kubectl("get", *args, "-o", "json").stdout)
    assert isinstance(result, dict)
    return result


def _wait_gone(server: ApiServer, *args: str) -> None:
    server.kubectl("wait", "--for=delete", *args, "--timeout=60s", timeout=90)


def _terminating_namespace(server: ApiServer, name: str) -> None:
    """A namespace being deleted whose VMI is held: it stays Terminating until ``_release_vmi``."""
    _namespace(server, name)
    _running_vm(server, name)
    _hold_vmi(server, name)
    server.kubectl("delete", "namespace", name, "--wait=false")
    _wait_gone(server, "-n", name, "vm/demo")


def test_a_namespace_created_with_kubectl_is_active_with_the_kubernetes_finalizer(
    api_server: ApiServer,
) -> None:
    _namespace(api_server, "gc-active")
    namespace = _get(api_server, "namespace", "gc-active")
    assert namespace["spec"] == {"finalizers": ["kubernetes"]}
    assert namespace["status"] == {"phase": "Active"}


def test_a_deleted_namespace_is_terminating_while_its_content_remains(api_server: ApiServer) -> None:
    _terminating_namespace(api_server, "gc-terminating")
    try:
        shown = api_server.kubectl("get", "namespace", "gc-terminating", "--no-headers").stdout
        assert shown.split()[1] == "Terminating"
        namespace = _get(api_server, "namespace", "gc-terminating")
        assert namespace["metadata"]["deletionTimestamp"]  # type: ignore[index]
        conditions = {c["type"]: c for c in namespace["status"]["conditions"]}  # type: ignore[index]
        remaining = conditions["NamespaceFinalizersRemaining"]
        assert (remaining["status"], remaining["reason"]) == ("True", "SomeFinalizersRemain")
        assert HOLD in remaining["message"]
        vmi = _get(api_server, "-n", "gc-terminating", "vmi", "demo")
        assert vmi["metadata"]["deletionTimestamp"]  # type: ignore[index]
    finally:
        _release_vmi(api_server, "gc-terminating")
    _wait_gone(api_server, "namespace/gc-terminating")


def test_creating_a_vm_in_a_terminating_namespace_is_refused(api_server: ApiServer) -> None:
    _terminating_namespace(api_server, "gc-refuse")
    try:
        result = api_server.kubectl(
            "-n",
            "gc-refuse",
            "create",
            "-f",
            "-",
            stdin=SMALL_VM.format(name="late", run_strategy="Always"),
            check=False,
        )
        status, body, _ = api_server.request(
            "POST",
            "/apis/kubevirt.io/v1/namespaces/gc-refuse/virtualmachines",
            body={"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "late2"}},
        )
    finally:
        _release_vmi(api_server, "gc-refuse")
    assert result.returncode != 0
    assert (
        'virtualmachines.kubevirt.io "late" is forbidden: unable to create new content in namespace '
        "gc-refuse because it is being terminated"
    ) in result.stderr
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace gc-refuse is being terminated",
            "field": "metadata.namespace",
        }
    ]
    _wait_gone(api_server, "namespace/gc-refuse")


def test_kubectl_delete_namespace_stops_its_vms_and_removes_it(api_server: ApiServer) -> None:
    _namespace(api_server, "gc-cascade")
    _running_vm(api_server, "gc-cascade")
    vmi_uid = _get(api_server, "-n", "gc-cascade", "vmi", "demo")["metadata"]["uid"]  # type: ignore[index]
    api_server.kubectl("delete", "namespace", "gc-cascade", "--timeout=60s", timeout=90)
    gone = api_server.kubectl("get", "namespace", "gc-cascade", check=False)
    assert 'namespaces "gc-cascade" not found' in gone.stderr
    # The VMI went through its agent's finalizer: its guest was stopped, not just forgotten.
    events = _get(api_server, "events", "-A", f"--field-selector=involvedObject.uid={vmi_uid}")
    assert events["items"] == []
    assert api_server.kubectl("get", "vmi", "-A", "--no-headers").stdout.strip() == ""


def _revisions(server: ApiServer, namespace: str) -> list[dict[str, object]]:
    items = _get(server, "-n", namespace, "controllerrevisions")["items"]
    assert isinstance(items, list)
    return items


def test_deleting_a_vm_removes_its_controller_revisions_and_events(api_server: ApiServer) -> None:
    _namespace(api_server, "gc-vm")
    _running_vm(api_server, "gc-vm")
    assert _revisions(api_server, "gc-vm")
    assert _get(api_server, "-n", "gc-vm", "events")["items"]
    api_server.kubectl("-n", "gc-vm", "delete", "vm", "demo")
    _wait_gone(api_server, "-n", "gc-vm", "vmi/demo")
    api_server.kubectl(
        "-n", "gc-vm", "wait", "--for=delete", "controllerrevisions", "--all", "--timeout=30s", timeout=60
    )
    api_server.kubectl("-n", "gc-vm", "wait", "--for=delete", "events", "--all", "--timeout=30s", timeout=60)
    assert _revisions(api_server, "gc-vm") == []


def test_foreground_deletion_keeps_the_owner_until_its_blocking_dependents_are_gone(
    api_server: ApiServer,
) -> None:
    _namespace(api_server, "gc-foreground")
    _running_vm(api_server, "gc-foreground")
    _hold_vmi(api_server, "gc-foreground")
    api_server.kubectl("-n", "gc-foreground", "delete", "vm", "demo", "--cascade=foreground", "--wait=false")
    try:
        vm = _get(api_server, "-n", "gc-foreground", "vm", "demo")
        assert vm["metadata"]["deletionTimestamp"]  # type: ignore[index]
        assert "foregroundDeletion" in vm["metadata"]["finalizers"]  # type: ignore[index]
    finally:
        _release_vmi(api_server, "gc-foreground")
    _wait_gone(api_server, "-n", "gc-foreground", "vm/demo")
    assert _revisions(api_server, "gc-foreground") == []


def test_kubectl_cascade_foreground_returns_once_the_vm_and_its_dependents_are_gone(
    api_server: ApiServer,
) -> None:
    _namespace(api_server, "gc-fg-wait")
    _running_vm(api_server, "gc-fg-wait")
    api_server.kubectl(
        "-n", "gc-fg-wait", "delete", "vm", "demo", "--cascade=foreground", "--timeout=60s", timeout=90
    )
    assert api_server.kubectl("-n", "gc-fg-wait", "get", "vm,vmi", "--no-headers").stdout.strip() == ""
    assert _revisions(api_server, "gc-fg-wait") == []


def test_orphan_deletion_leaves_the_controller_revision_without_its_owner_reference(
    api_server: ApiServer,
) -> None:
    _namespace(api_server, "gc-orphan")
    _running_vm(api_server, "gc-orphan")
    [revision] = _revisions(api_server, "gc-orphan")
    api_server.kubectl(
        "-n", "gc-orphan", "delete", "vm", "demo", "--cascade=orphan", "--timeout=60s", timeout=90
    )
    [kept] = _revisions(api_server, "gc-orphan")
    assert kept["metadata"]["uid"] == revision["metadata"]["uid"]  # type: ignore[index]
    assert "ownerReferences" not in kept["metadata"]  # type: ignore[operator]


def test_finalize_subresource_replaces_spec_finalizers_only(api_server: ApiServer) -> None:
    _namespace(api_server, "gc-finalize")
    namespace = _get(api_server, "namespace", "gc-finalize")
    body = {
        **namespace,
        "spec": {"finalizers": []},
        "metadata": {**namespace["metadata"], "labels": {"a": "b"}},
    }  # type: ignore[dict-item]
    status, finalized, _ = api_server.request("PUT", "/api/v1/namespaces/gc-finalize/finalize", body=body)
    assert status == 200
    assert finalized["spec"]["finalizers"] == []
    assert "labels" not in finalized["metadata"]
    api_server.kubectl("delete", "namespace", "gc-finalize", "--timeout=30s")
    assert api_server.kubectl("get", "namespace", "gc-finalize", check=False).returncode != 0


def test_a_bad_finalizer_on_finalize_is_refused_naming_the_field(api_server: ApiServer) -> None:
    _namespace(api_server, "gc-bad-finalize")
    namespace = _get(api_server, "namespace", "gc-bad-finalize")
    body = {**namespace, "spec": {"finalizers": ["not a name"]}}
    status, answer, _ = api_server.request("PUT", "/api/v1/namespaces/gc-bad-finalize/finalize", body=body)
    assert (status, answer["reason"]) == (422, "Invalid")
    assert answer["details"]["causes"][0]["field"] == "spec.finalizers[0]"
    assert _get(api_server, "namespace", "gc-bad-finalize")["spec"] == {"finalizers": ["kubernetes"]}
