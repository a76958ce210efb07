"""Deletions refused whoever asks: Kubernetes' immortal namespaces, and the KubeVirt object while
workloads exist (unless its uninstall strategy is ``RemoveWorkloads``)."""

from __future__ import annotations

import json

import pytest
from test_api_support import USER_GUIDE_VM, ApiServer, api_server

from vmplane.apiserver.deletion_guards import deletion_refusal
from vmplane.apiserver.kinds import default_registry

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

_REGISTRY = default_registry()
_NAMESPACES = _REGISTRY.lookup("", "v1", "namespaces")
_KUBEVIRTS = _REGISTRY.lookup("kubevirt.io", "v1", "kubevirts")
_VMIS = "virtualmachineinstances.kubevirt.io"
_VMS = "virtualmachines.kubevirt.io"


def _named(name: str, spec: dict[str, object] | None = None) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": spec or {}}


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public", "kubevirt"])
def test_immortal_namespace_deletion_is_forbidden(name: str) -> None:
    assert _NAMESPACES is not None
    refusal = deletion_refusal(_NAMESPACES, _named(name))
    assert refusal is not None
    assert (refusal.code, refusal.status["reason"]) == (403, "Forbidden")
    assert refusal.status["message"] == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    assert refusal.status["details"] == {"name": name, "kind": "namespaces"}


def test_other_namespaces_may_be_deleted() -> None:
    assert _NAMESPACES is not None
    assert deletion_refusal(_NAMESPACES, _named("demo")) is None


@pytest.mark.parametrize(
    ("present", "shown"),
    [((_VMIS, _VMS), "Virtual Machine Instances"), ((_VMS,), "Virtual Machines")],
    ids=["vmis-first", "vms"],
)
def test_kubevirt_deletion_is_refused_while_workloads_exist(present: tuple[str, ...], shown: str) -> None:
    assert _KUBEVIRTS is not None
    refusal = deletion_refusal(_KUBEVIRTS, _named("kubevirt"), workloads_present=present)
    assert refusal is not None
    assert refusal.code == 400
    assert str(refusal).startswith(f"Rejecting the uninstall request, since there are still {shown} present.")


def test_kubevirt_deletion_is_allowed_without_workloads() -> None:
    assert _KUBEVIRTS is not None
    assert deletion_refusal(_KUBEVIRTS, _named("kubevirt")) is None


def test_kubevirt_deletion_with_remove_workloads_strategy_is_allowed() -> None:
    assert _KUBEVIRTS is not None
    kubevirt = _named("kubevirt", {"uninstallStrategy": "RemoveWorkloads"})
    assert deletion_refusal(_KUBEVIRTS, kubevirt, workloads_present=(_VMIS, _VMS)) is None


def test_kubectl_delete_namespace_default_is_forbidden(api_server: ApiServer) -> None:
    result = api_server.kubectl("delete", "namespace", "default", check=False)
    assert result.returncode != 0
    assert 'namespaces "default" is forbidden: this namespace may not be deleted' in result.stderr
    kept = api_server.kubectl("get", "namespace", "default", "-o", "name").stdout
    assert kept.strip() == "namespace/default"


def test_kubectl_delete_kubevirt_is_refused_while_a_vm_exists(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=USER_GUIDE_VM)
    try:
        result = api_server.kubectl("-n", "kubevirt", "delete", "kubevirt", "kubevirt", check=False)
        assert result.returncode != 0
        assert "Rejecting the uninstall request" in result.stderr
        kept = api_server.kubectl("-n", "kubevirt", "get", "kubevirt", "kubevirt", "-o", "json").stdout
        assert json.loads(kept)["metadata"]["name"] == "kubevirt"
    finally:
        api_server.kubectl("delete", "-f", "-", "--wait=true", stdin=USER_GUIDE_VM)
