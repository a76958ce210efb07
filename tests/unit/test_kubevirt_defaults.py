"""The KubeVirt object defaulted with the structure of upstream's installed CR."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from vmplane.api.errors import InvalidObjectError
from vmplane.api.kubevirt_defaults import default_kubevirt
from vmplane.apiserver.typed_kinds import KubeVirtAdmitter

#: The user guide's command: kubectl patch kv kubevirt --type=json -p '[...]'.
USER_GUIDE_PATCH = [
    {"op": "add", "path": "/spec/workloadUpdateStrategy/workloadUpdateMethods", "value": ["LiveMigrate"]}
]
BARE: dict[str, Any] = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "KubeVirt",
    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
}


def test_a_bare_kubevirt_gets_upstreams_defaults() -> None:
    assert default_kubevirt(BARE)["spec"] == {
        "certificateRotateStrategy": {},
        "configuration": {"developerConfiguration": {}},
        "customizeComponents": {},
        "imagePullPolicy": "IfNotPresent",
        "workloadUpdateStrategy": {},
        "uninstallStrategy": "BlockUninstallIfWorkloadsExist",
    }


def test_defaulting_keeps_what_the_user_set() -> None:
    spec = {
        "imagePullPolicy": "Always",
        "uninstallStrategy": "RemoveWorkloads",
        "configuration": {
            "vmRolloutStrategy": "LiveUpdate",
            "developerConfiguration": {"featureGates": ["A"]},
        },
    }
    defaulted = default_kubevirt({**BARE, "spec": spec})["spec"]
    assert (defaulted["imagePullPolicy"], defaulted["uninstallStrategy"]) == ("Always", "RemoveWorkloads")
    assert defaulted["configuration"] == {
        "vmRolloutStrategy": "LiveUpdate",
        "developerConfiguration": {"featureGates": ["A"]},
    }


def test_defaulting_is_idempotent() -> None:
    once = default_kubevirt(BARE)
    assert default_kubevirt(once) == once


def test_defaulting_does_not_modify_its_argument() -> None:
    original: dict[str, Any] = {**BARE, "spec": {"configuration": {}}}
    default_kubevirt(original)
    assert original["spec"] == {"configuration": {}}


def test_the_user_guide_json_patch_applies_to_a_defaulted_kubevirt() -> None:
    patched = jsonpatch.apply_patch(default_kubevirt(BARE), USER_GUIDE_PATCH)
    assert patched["spec"]["workloadUpdateStrategy"] == {"workloadUpdateMethods": ["LiveMigrate"]}


def _admit(obj: dict[str, Any]) -> dict[str, Any]:
    admitted = KubeVirtAdmitter().admit(
        operation="CREATE", new=obj, old=None, field_validation="Strict", dry_run=False
    )
    return admitted.object


def test_admission_defaults_the_object_it_stores() -> None:
    assert _admit(BARE)["spec"]["workloadUpdateStrategy"] == {}


def test_admission_accepts_upstreams_kubevirt_cr() -> None:
    upstream = {
        **BARE,
        "spec": {
            "certificateRotateStrategy": {},
            "configuration": {"developerConfiguration": {"featureGates": []}},
            "customizeComponents": {},
            "imagePullPolicy": "IfNotPresent",
            "workloadUpdateStrategy": {},
        },
    }
    assert _admit(upstream)["spec"]["configuration"]["developerConfiguration"] == {"featureGates": []}


def test_admission_refuses_an_unknown_workload_update_method_naming_the_field() -> None:
    bad = {**BARE, "spec": {"workloadUpdateStrategy": {"workloadUpdateMethods": ["Teleport"]}}}
    with pytest.raises(InvalidObjectError) as raised:
        _admit(bad)
    assert [c.field for c in raised.value.causes] == ["spec.workloadUpdateStrategy.workloadUpdateMethods[0]"]
