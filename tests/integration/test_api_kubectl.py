"""Unmodified kubectl against ``vmplane serve``: discovery, apply, get, watch, patch, edit, wait, delete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_api_support import CPU_HOTPLUG_VM, USER_GUIDE_VM, ApiServer, LineReader, api_server, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]


def _apply(server: ApiServer, manifest: str, *extra: str) -> str:
    return server.kubectl("apply", "-f", "-", *extra, stdin=manifest).stdout


def _vm(server: ApiServer, name: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(server.kubectl("get", "vm", name, "-o", "json").stdout)
    return result


def test_version_and_api_resources(api_server: ApiServer) -> None:
    assert "Server Version: v1.32.0-vmplane" in api_server.kubectl("version").stdout
    resources = api_server.kubectl("api-resources").stdout
    for line in ("vm,vms", "vmi,vmis", "kv,kvs"):
        assert line in resources
    assert "kubevirt   kubevirt" in api_server.kubectl("get", "kv", "-A").stdout.replace("  ", " ") or (
        "kubevirt" in api_server.kubectl("get", "kv", "-n", "kubevirt").stdout
    )
    namespaces = api_server.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kubevirt"} <= set(namespaces)


def test_apply_get_reapply_delete_user_guide_vm(api_server: ApiServer) -> None:
    assert "virtualmachine.kubevirt.io/testvm created" in _apply(api_server, USER_GUIDE_VM)
    table = api_server.kubectl("get", "vm").stdout.splitlines()
    assert table[0].split() == ["NAME", "AGE", "STATUS", "READY"]
    assert table[1].split()[0] == "testvm"
    as_yaml = api_server.kubectl("get", "vm", "testvm", "-o", "yaml").stdout
    assert "cirros-container-disk-demo" in as_yaml
    assert "resourceVersion:" in as_yaml

    assert "unchanged" in _apply(api_server, USER_GUIDE_VM)
    changed = (
        USER_GUIDE_VM.replace("runStrategy: Halted", "runStrategy: Manual")
        .replace(
            "        - name: cloudinitdisk\n"
            "          cloudInitNoCloud:\n"
            "            userDataBase64: SGkuXG4=\n",
            "",
        )
        .replace("            - name: cloudinitdisk\n              disk:\n                bus: virtio\n", "")
    )
    assert "configured" in _apply(api_server, changed)
    vm = _vm(api_server, "testvm")
    spec = vm["spec"]
    assert isinstance(spec, dict)
    assert spec["runStrategy"] == "Manual"
    assert [v["name"] for v in spec["template"]["spec"]["volumes"]] == ["containerdisk"]
    assert vm["metadata"]["generation"] == 2  # type: ignore[index]

    assert "deleted" in api_server.kubectl("delete", "vm", "testvm").stdout
    missing = api_server.kubectl("get", "vm", "testvm", check=False)
    assert missing.returncode != 0
    assert 'virtualmachines.kubevirt.io "testvm" not found' in missing.stderr


def test_patch_merge_json_and_strategic(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="patchme"))
    api_server.kubectl("patch", "vm", "patchme", "--type", "merge", "-p", '{"spec":{"runStrategy":"Manual"}}')
    api_server.kubectl(
        "patch",
        "vm",
        "patchme",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/spec/runStrategy","value":"Manual"},'
        '{"op":"replace","path":"/spec/template/spec/domain/cpu/sockets","value":3}]',
    )
    spec = _vm(api_server, "patchme")["spec"]
    assert isinstance(spec, dict)
    assert spec["runStrategy"] == "Manual"
    assert spec["template"]["spec"]["domain"]["cpu"]["sockets"] == 3

    failed_test = api_server.kubectl(
        "patch",
        "vm",
        "patchme",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/spec/runStrategy","value":"Always"}]',
        check=False,
    )
    assert failed_test.returncode != 0
    strategic = api_server.kubectl("patch", "vm", "patchme", "-p", '{"spec":{}}', check=False)
    assert strategic.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in strategic.stderr
    api_server.kubectl("delete", "vm", "patchme")


def test_edit_with_kube_editor(api_server: ApiServer, tmp_path: Path) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="editme"))
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/runStrategy: Halted/runStrategy: Always/" "$1"\n')
    editor.chmod(0o755)
    result = api_server.kubectl("edit", "vm", "editme", KUBE_EDITOR=str(editor))
    assert "edited" in result.stdout
    assert _vm(api_server, "editme")["spec"]["runStrategy"] == "Always"  # type: ignore[index]
    api_server.kubectl("delete", "vm", "editme")


def test_describe_shows_object(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="describeme"))
    described = api_server.kubectl("describe", "vm", "describeme").stdout
    assert "Name:" in described
    assert "describeme" in described
    assert "Max Sockets:" in described
    api_server.kubectl("delete", "vm", "describeme")


def test_get_watch_prints_changes(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="watchme"))
    watcher = subprocess.Popen(
        ["kubectl", "get", "vm", "watchme", "-w", "--request-timeout=30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api_server.env(),
    )
    try:
        lines = LineReader(watcher)
        lines.wait_for(lambda line: line.startswith("NAME"))
        lines.wait_for(lambda line: line.startswith("watchme"))
        api_server.kubectl(
            "patch",
            "vm",
            "watchme",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            '{"status":{"printableStatus":"Starting"}}',
        )
        lines.wait_for(lambda line: line.startswith("watchme") and "Starting" in line)
    finally:
        stop_process(watcher)
    api_server.kubectl("delete", "vm", "watchme")


def test_wait_for_jsonpath(api_server: ApiServer) -> None:
    _apply(api_server, CPU_HOTPLUG_VM.format(name="waitme"))
    waiter = subprocess.Popen(
        [
            "kubectl",
            "wait",
            "vm",
            "waitme",
            "--for=jsonpath={.status.printableStatus}=Running",
            "--timeout=30s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api_server.env(),
    )
    try:
        lines = LineReader(waiter)
        api_server.kubectl(
            "patch", "vm", "waitme", "--type", "merge", "-p", '{"spec":{"runStrategy":"Always"}}'
        )
        lines.wait_for(lambda line: "condition met" in line, timeout=40)
        assert waiter.wait(timeout=10) == 0
    finally:
        stop_process(waiter)
    api_server.kubectl("delete", "vm", "waitme")


def test_apply_server_dry_run_stores_nothing(api_server: ApiServer) -> None:
    before = api_server.revision()
    output = api_server.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=CPU_HOTPLUG_VM.format(name="dryrun")
    ).stdout
    assert json.loads(output)["metadata"]["uid"]
    assert api_server.kubectl("get", "vm", "dryrun", check=False).returncode != 0
    # The VM controller writes other objects meanwhile, so the revision may move; but no change to
    # "dryrun" was ever stored: a watch from before the dry run sees no event for it.
    query = f"watch=1&resourceVersion={before}&fieldSelector=metadata.name%3Ddryrun&timeoutSeconds=1"
    response = api_server.http().request(
        "GET",
        f"{api_server.url}/apis/kubevirt.io/v1/namespaces/default/virtualmachines?{query}",
        headers={"Authorization": f"Bearer {api_server.token}"},
        timeout=30,
    )
    assert response.status == 200
    assert response.data.strip() == b""


def test_server_side_apply_creates_and_merges(api_server: ApiServer) -> None:
    manifest = CPU_HOTPLUG_VM.format(name="ssa")
    api_server.kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    api_server.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=manifest.replace("runStrategy: Halted", "runStrategy: Always"),
    )
    assert _vm(api_server, "ssa")["spec"]["runStrategy"] == "Always"  # type: ignore[index]
    api_server.kubectl("delete", "vm", "ssa")


def test_label_selectors_and_all_namespaces(api_server: ApiServer) -> None:
    for name in ("sel-a", "sel-b"):
        _apply(api_server, CPU_HOTPLUG_VM.format(name=name))
    api_server.kubectl("label", "vm", "sel-b", "tier=gold")
    names = api_server.kubectl("get", "vm", "-l", "app in (hotplug),tier notin (gold)", "-o", "name").stdout
    assert names.split() == ["virtualmachine.kubevirt.io/sel-a"]
    names = api_server.kubectl("get", "vm", "-A", "-l", "tier", "-o", "name").stdout
    assert names.split() == ["virtualmachine.kubevirt.io/sel-b"]
    api_server.kubectl("delete", "vm", "-l", "app=hotplug")
    assert api_server.kubectl("get", "vm", "-l", "app=hotplug", "-o", "name").stdout.strip() == ""


def test_explain(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "vm.spec").stdout
    assert "KIND:       VirtualMachine" in explained
    assert "FIELD: spec" in explained


def test_explain_walks_into_nested_fields_with_upstream_descriptions(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "vm.spec.template.spec.domain.cpu.sockets").stdout
    assert "FIELD: sockets <integer>" in explained
    assert "Sockets specifies the number of sockets inside the vmi." in explained


def test_explain_lists_the_fields_of_an_object(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "vm.spec.template.spec.domain.cpu").stdout
    for field in ("sockets\t<integer>", "maxSockets\t<integer>", "model\t<string>"):
        assert field in explained


def test_explain_recursive_shows_the_whole_tree(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "vm.spec.template.spec.domain", "--recursive").stdout
    lines = [line.strip() for line in explained.splitlines()]
    assert "cpu\t<CPU>" in lines
    assert "sockets\t<integer>" in lines
    assert "guest\t<Quantity>" in lines


def test_openapi_lists_the_subresources_kubectl_can_read(api_server: ApiServer) -> None:
    v2 = json.loads(api_server.kubectl("get", "--raw", "/openapi/v2").stdout)
    assert (
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/start" in v2["paths"]
    )
    v3 = json.loads(api_server.kubectl("get", "--raw", "/openapi/v3/apis/subresources.kubevirt.io/v1").stdout)
    assert v3["paths"]["/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/stop"]
    # The extra document does not get in the way of explain, which reads kubevirt.io/v1's.
    assert "FIELD: spec" in api_server.kubectl("explain", "vm.spec").stdout
