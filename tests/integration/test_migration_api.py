"""The migration API served by ``vmplane serve`` (simulated guests) to kubectl and HTTP clients:
``PUT .../virtualmachines/NAME/migrate`` creates a VirtualMachineInstanceMigration as upstream's
virt-api does, ``kubectl get vmim`` lists it with upstream's columns, and a VMI's LiveMigratable
condition is reported. Moving the guest is the migration controller's and the agents' (not here)."""

from __future__ import annotations

import json

import pytest
from test_api_support import SMALL_VM, ApiServer, api_server

__all__ = ["api_server"]

pytestmark = pytest.mark.requires("kubectl")

ROOT = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines"


def running_vm(server: ApiServer, name: str) -> None:
    server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name=name, run_strategy="Always"))
    server.kubectl("wait", "vmi", name, "--for=condition=LiveMigratable", "--timeout=60s")


def migrations_of(server: ApiServer, vmi: str) -> list[dict[str, object]]:
    listed = server.kubectl("get", "vmim", "-l", f"kubevirt.io/vmi-name={vmi}", "-o", "json").stdout
    return list(json.loads(listed)["items"])


def test_migrate_creates_a_migration_of_the_vmi(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-create")
    status, _, _ = api_server.request(
        "PUT", f"{ROOT}/mig-create/migrate", body={"addedNodeSelector": {"zone": "b"}}
    )
    assert status == 202
    [migration] = migrations_of(api_server, "mig-create")
    assert migration["spec"] == {"vmiName": "mig-create", "addedNodeSelector": {"zone": "b"}}


def test_kubectl_get_vmim_shows_upstream_columns(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-columns")
    api_server.request("PUT", f"{ROOT}/mig-columns/migrate", body={})
    header = api_server.kubectl("get", "vmim", "-l", "kubevirt.io/vmi-name=mig-columns").stdout
    assert header.split("\n")[0].split() == ["NAME", "PHASE", "VMI"]


def test_a_second_migrate_while_one_is_in_flight_is_refused(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-twice")
    api_server.request("PUT", f"{ROOT}/mig-twice/migrate", body={})
    status, body, _ = api_server.request("PUT", f"{ROOT}/mig-twice/migrate", body={})
    assert (status, body["details"]["causes"][0]["field"]) == (422, "spec.vmiName")


def test_migrate_of_a_vm_without_a_vmi_is_not_found(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=SMALL_VM.format(name="mig-halted", run_strategy="Halted"))
    status, body, _ = api_server.request("PUT", f"{ROOT}/mig-halted/migrate", body={})
    assert (status, body["reason"]) == (404, "NotFound")


def test_migrate_with_an_invalid_selector_is_a_bad_request_naming_it(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-selector")
    status, body, _ = api_server.request(
        "PUT", f"{ROOT}/mig-selector/migrate", body={"addedNodeSelector": {"zone": "a b"}}
    )
    assert (status, body["message"].split(":")[0]) == (400, "addedNodeSelector[zone]")


def test_a_dry_run_migrate_creates_nothing(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-dry")
    status, _, _ = api_server.request("PUT", f"{ROOT}/mig-dry/migrate", body={"dryRun": ["All"]})
    assert (status, migrations_of(api_server, "mig-dry")) == (202, [])


def test_deleting_a_migration_removes_it_from_the_list(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-delete")
    api_server.request("PUT", f"{ROOT}/mig-delete/migrate", body={})
    api_server.kubectl("delete", "vmim", "-l", "kubevirt.io/vmi-name=mig-delete", "--wait=true")
    assert migrations_of(api_server, "mig-delete") == []


def test_kubectl_explain_describes_the_migration_spec(api_server: ApiServer) -> None:
    explained = api_server.kubectl("explain", "vmim.spec.addedNodeSelector").stdout
    assert "restrict the set of allowed target nodes" in " ".join(explained.split())


def test_the_kubevirt_object_takes_migration_limits(api_server: ApiServer) -> None:
    patch = {"spec": {"configuration": {"migrations": {"parallelMigrationsPerCluster": 3}}}}
    api_server.kubectl("patch", "kv", "kubevirt", "-n", "kubevirt", "--type=merge", "-p", json.dumps(patch))
    limits = api_server.kubectl(
        "get", "kv", "kubevirt", "-n", "kubevirt", "-o", "jsonpath={.spec.configuration.migrations}"
    ).stdout
    assert json.loads(limits) == {"parallelMigrationsPerCluster": 3}


def test_a_migration_limit_below_one_is_refused_naming_the_field(api_server: ApiServer) -> None:
    patch = {"spec": {"configuration": {"migrations": {"parallelOutboundMigrationsPerNode": 0}}}}
    refused = api_server.kubectl(
        "patch", "kv", "kubevirt", "-n", "kubevirt", "--type=merge", "-p", json.dumps(patch), check=False
    )
    assert "spec.configuration.migrations.parallelOutboundMigrationsPerNode" in refused.stderr


def test_cli_migrate_to_a_node_sets_its_hostname_selector(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-cli")
    assert api_server.vmplane("migrate", "mig-cli", "--node", "node02", check=False).returncode == 0
    [migration] = migrations_of(api_server, "mig-cli")
    assert migration["spec"] == {
        "vmiName": "mig-cli",
        "addedNodeSelector": {"kubernetes.io/hostname": "node02"},
    }


def test_cli_migrate_cancel_deletes_the_migration_in_flight(api_server: ApiServer) -> None:
    running_vm(api_server, "mig-cancel")
    api_server.vmplane("migrate", "mig-cancel", "--selector", "zone=b", check=False)
    assert api_server.vmplane("migrate-cancel", "mig-cancel", check=False).returncode == 0
    assert migrations_of(api_server, "mig-cancel") == []


def test_cli_migrate_with_a_malformed_selector_fails_naming_it(api_server: ApiServer) -> None:
    result = api_server.vmplane("migrate", "mig-none", "--selector", "zone", check=False)
    assert (result.returncode, result.stderr.strip()) == (1, "error: --selector 'zone': must be KEY=VALUE")
