"""Server-side apply as kubectl 1.32 drives it: managedFields, conflicts, --force-conflicts, pruning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_api_support import CPU_HOTPLUG_VM, ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

_VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


def _apply(server: ApiServer, manifest: str, *extra: str, check: bool = True) -> Any:
    return server.kubectl("apply", "--server-side", *extra, "-f", "-", stdin=manifest, check=check)


def _managed(server: ApiServer, name: str) -> list[dict[str, Any]]:
    shown = server.kubectl("get", "vm", name, "-o", "yaml", "--show-managed-fields").stdout
    entries: list[dict[str, Any]] = yaml.safe_load(shown)["metadata"]["managedFields"]
    return entries


def _edit(server: ApiServer, tmp_path: Path, name: str, sed: str) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text(f'#!/bin/sh\nsed -i "{sed}" "$1"\n')
    editor.chmod(0o755)
    server.kubectl("edit", "vm", name, KUBE_EDITOR=str(editor))


def test_apply_records_an_apply_entry_in_fields_v1(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="ssa-owned"))
    [entry] = _managed(api_server, "ssa-owned")
    assert entry["manager"] == "kubectl"
    assert entry["operation"] == "Apply"
    assert entry["apiVersion"] == "kubevirt.io/v1"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["time"].endswith("Z")
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert fields["f:spec"]["f:runStrategy"] == {}
    disks = fields["f:spec"]["f:template"]["f:spec"]["f:domain"]["f:devices"]["f:disks"]
    assert disks == {'k:{"name":"containerdisk"}': {".": {}, "f:disk": {"f:bus": {}}, "f:name": {}}}


def test_managed_fields_hidden_unless_asked(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="ssa-hidden"))
    assert "managedFields" not in api_server.kubectl("get", "vm", "ssa-hidden", "-o", "yaml").stdout


def test_edit_records_an_update_entry_and_apply_conflicts_with_it(
    api_server: ApiServer, tmp_path: Path
) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa-conflict")
    _apply(api_server, manifest)
    _edit(api_server, tmp_path, "ssa-conflict", "s/runStrategy: Halted/runStrategy: Manual/")
    edit_entry = next(e for e in _managed(api_server, "ssa-conflict") if e["manager"] == "kubectl-edit")
    assert edit_entry["operation"] == "Update"
    assert edit_entry["fieldsV1"] == {"f:spec": {"f:runStrategy": {}}}

    refused = _apply(api_server, manifest.replace("runStrategy: Halted", "runStrategy: Always"), check=False)
    assert refused.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using kubevirt.io/v1: .spec.runStrategy'
        in refused.stderr
    )
    vm = json.loads(api_server.kubectl("get", "vm", "ssa-conflict", "-o", "json").stdout)
    assert vm["spec"]["runStrategy"] == "Manual"


def test_apply_of_the_value_another_manager_set_shares_the_field(
    api_server: ApiServer, tmp_path: Path
) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa-shared")
    _apply(api_server, manifest)
    _edit(api_server, tmp_path, "ssa-shared", "s/runStrategy: Halted/runStrategy: Manual/")
    _apply(api_server, manifest.replace("runStrategy: Halted", "runStrategy: Manual"))
    owners = {
        e["manager"] for e in _managed(api_server, "ssa-shared") if "f:runStrategy" in e["fieldsV1"]["f:spec"]
    }
    assert owners == {"kubectl", "kubectl-edit"}


def test_force_conflicts_takes_the_field_over(api_server: ApiServer) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa-force")
    _apply(api_server, manifest)
    api_server.kubectl(
        "patch", "vm", "ssa-force", "--type", "merge", "-p", '{"spec":{"runStrategy":"Manual"}}'
    )
    patch_entry = next(e for e in _managed(api_server, "ssa-force") if e["manager"] == "kubectl-patch")
    assert patch_entry["fieldsV1"] == {"f:spec": {"f:runStrategy": {}}}

    _apply(api_server, manifest.replace("runStrategy: Halted", "runStrategy: Always"), "--force-conflicts")
    vm = json.loads(api_server.kubectl("get", "vm", "ssa-force", "-o", "json").stdout)
    assert vm["spec"]["runStrategy"] == "Always"
    assert "kubectl-patch" not in {e["manager"] for e in _managed(api_server, "ssa-force")}


def test_fields_dropped_from_the_config_are_removed(api_server: ApiServer) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa-prune")
    _apply(api_server, manifest)
    api_server.kubectl("label", "vm", "ssa-prune", "team=blue")
    _apply(
        api_server,
        manifest.replace("  labels:\n    app: hotplug\n", "").replace("          maxSockets: 8\n", ""),
    )
    vm = json.loads(api_server.kubectl("get", "vm", "ssa-prune", "-o", "json").stdout)
    assert vm["metadata"]["labels"] == {"team": "blue"}  # kubectl-label's label stays: not the applier's
    assert "maxSockets" not in vm["spec"]["template"]["spec"]["domain"]["cpu"]


def test_conflict_status_has_upstream_causes(api_server: ApiServer) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa-causes")
    _apply(api_server, manifest)
    api_server.kubectl(
        "patch", "vm", "ssa-causes", "--type", "merge", "-p", '{"spec":{"runStrategy":"Manual"}}'
    )
    status, body, _ = api_server.request(
        "PATCH",
        f"{_VMS}/ssa-causes?fieldManager=kubectl",
        body=manifest.replace("runStrategy: Halted", "runStrategy: Always"),
        content_type="application/apply-patch+yaml",
    )
    assert status == 409
    assert body["reason"] == "Conflict"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-patch" using kubevirt.io/v1',
            "field": ".spec.runStrategy",
        }
    ]


def test_manager_defaults_to_the_user_agent_product(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="ssa-agent"))
    status, _, _ = api_server.request(
        "PATCH",
        f"{_VMS}/ssa-agent",
        body={"metadata": {"annotations": {"note": "x"}}},
        content_type="application/merge-patch+json",
        headers={"User-Agent": "my-operator/1.2 (linux/amd64)"},
    )
    assert status == 200
    entry = next(e for e in _managed(api_server, "ssa-agent") if e["manager"] == "my-operator")
    assert entry["fieldsV1"] == {"f:metadata": {"f:annotations": {"f:note": {}}}}


@pytest.mark.parametrize(
    ("manager", "problem"),
    [("m" * 129, "Too long: may not be more than 128 bytes"), ("bad\x01", "invalid character U+0001")],
    ids=["too-long", "not-printable"],
)
def test_invalid_field_manager_is_422(api_server: ApiServer, manager: str, problem: str) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="ssa-badmanager"))
    status, body, _ = api_server.request(
        "PATCH",
        f"{_VMS}/ssa-badmanager?fieldManager={manager.replace(chr(1), '%01')}",
        body={"metadata": {"annotations": {"n": "1"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert body["message"].startswith('PatchOptions.meta.k8s.io "" is invalid: fieldManager: ')
    assert problem in body["message"]


def test_a_list_of_one_empty_entry_strips_managed_fields(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="ssa-strip"))
    status, body, _ = api_server.request(
        "PATCH",
        f"{_VMS}/ssa-strip",
        body={"metadata": {"managedFields": [{}]}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert "managedFields" not in body["metadata"]
