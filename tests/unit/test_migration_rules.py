"""The migration API's pure parts: LiveMigratable and its upstream reasons, the eviction strategy in
force, the cluster limits, and the admission of VirtualMachineInstanceMigrations."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.errors import InvalidObjectError
from vmplane.api.kubevirt import KubeVirt
from vmplane.api.meta import Condition
from vmplane.api.migratable import MigrationSupport, eviction_strategy, migratability
from vmplane.api.migration import MIGRATION_SELECTOR_LABEL, MigrationLimits
from vmplane.api.volumes import HostDisk, Volume
from vmplane.apiserver.migration_kind import MigrationAdmitter
from vmplane.store.base import JsonObject
from vmplane.testing.builders import config, container_disk, interface, network, pvc, vm_spec

EVERYTHING = MigrationSupport(copies_local_disks=True, shared_claims=True)


def reason(
    spec: Any, support: MigrationSupport = EVERYTHING, annotations: dict[str, str] | None = None
) -> Any:
    condition = migratability(spec, annotations or {}, support).condition
    return (condition.status, condition.reason)


def test_a_guest_with_masquerade_and_no_volumes_is_live_migratable() -> None:
    spec = vm_spec(interfaces=[interface("default", binding="masquerade")], networks=[network("default")])
    assert reason(spec) == ("True", None)


def test_bridge_on_the_pod_network_is_not_live_migratable() -> None:
    spec = vm_spec(interfaces=[interface("default")], networks=[network("default")])
    assert reason(spec) == ("False", "InterfaceNotLiveMigratable")


def test_the_pod_bridge_annotation_allows_migration() -> None:
    spec = vm_spec(interfaces=[interface("default")], networks=[network("default")])
    allowed = {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}
    assert reason(spec, annotations=allowed) == ("True", None)


def test_a_claim_not_on_shared_storage_is_not_live_migratable() -> None:
    spec = vm_spec(volumes=[pvc("data")])
    condition = migratability(spec, {}, MigrationSupport(copies_local_disks=True)).condition
    assert (condition.reason, condition.message) == (
        "DisksNotLiveMigratable",
        "cannot migrate VMI: PVC data-pvc is not shared, live migration requires that all PVCs must be "
        "shared (using ReadWriteMany access mode)",
    )


def test_a_non_shared_host_disk_is_not_live_migratable() -> None:
    spec = vm_spec(volumes=[Volume(name="h", host_disk=HostDisk(path="/d/h.img", type="Disk"))])
    assert reason(spec) == ("False", "DisksNotLiveMigratable")


def test_a_container_disk_is_not_live_migratable_on_a_node_that_cannot_copy_it() -> None:
    spec = vm_spec(volumes=[container_disk("root")])
    assert reason(spec, MigrationSupport(shared_claims=True)) == ("False", "DisksNotLiveMigratable")


def test_a_container_disk_needs_block_migration() -> None:
    spec = vm_spec(volumes=[container_disk("root")])
    assert migratability(spec, {}, EVERYTHING).method == "BlockMigration"


def test_the_vmi_eviction_strategy_wins_over_the_cluster_one() -> None:
    spec = vm_spec().model_copy(update={"eviction_strategy": "LiveMigrate"})
    assert eviction_strategy(spec, config(eviction_strategy="None")) == "LiveMigrate"


def test_the_cluster_eviction_strategy_applies_when_the_vmi_has_none() -> None:
    assert eviction_strategy(vm_spec(), config(eviction_strategy="LiveMigrateIfPossible")) == (
        "LiveMigrateIfPossible"
    )


def test_migration_limits_default_as_upstream() -> None:
    limits = KubeVirt().spec.configuration.migration_limits
    assert (
        limits.parallel_migrations_per_cluster,
        limits.parallel_outbound_migrations_per_node,
        limits.progress_timeout,
        limits.completion_timeout_per_gib,
    ) == (5, 2, 150, 150)


def test_configured_migration_limits_replace_the_defaults() -> None:
    kubevirt = KubeVirt.model_validate(
        {
            "spec": {
                "configuration": {
                    "migrations": {"parallelMigrationsPerCluster": 1, "completionTimeoutPerGiB": 10}
                }
            }
        }
    )
    limits = kubevirt.spec.configuration.migration_limits
    assert (limits.parallel_migrations_per_cluster, limits.completion_timeout_per_gib) == (1, 10)


def test_the_completion_timeout_scales_with_guest_memory() -> None:
    assert MigrationLimits().completion_timeout(4 * 2**30) == 600


class _Cluster:
    def __init__(self, vmi: JsonObject | None, migrations: list[JsonObject] | None = None) -> None:
        self._vmi, self._migrations = vmi, migrations or []

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return self._vmi

    def migrations(self, namespace: str) -> list[JsonObject]:
        return self._migrations


def _vmi(phase: str = "Running", conditions: list[Condition] | None = None) -> JsonObject:
    status: JsonObject = {"phase": phase}
    if conditions:
        status["conditions"] = [c.to_wire() for c in conditions]
    return {"metadata": {"name": "vm", "namespace": "ns"}, "status": status}


def _migration(vmi_name: str | None = "vm", phase: str | None = None) -> JsonObject:
    obj: JsonObject = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u1"},
        "spec": {"vmiName": vmi_name} if vmi_name else {},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def _admit(cluster: _Cluster, new: JsonObject, old: JsonObject | None = None) -> JsonObject:
    admitted = MigrationAdmitter(cluster).admit(
        operation="UPDATE" if old else "CREATE", new=new, old=old, field_validation="Strict", dry_run=False
    )
    return admitted.object


def _refusal(cluster: _Cluster, new: JsonObject, old: JsonObject | None = None) -> tuple[str, str]:
    with pytest.raises(InvalidObjectError) as caught:
        _admit(cluster, new, old)
    return caught.value.causes[0].field, caught.value.causes[0].message


def test_a_created_migration_is_labelled_with_its_vmi() -> None:
    labels = _admit(_Cluster(_vmi()), _migration())["metadata"]["labels"]
    assert labels == {MIGRATION_SELECTOR_LABEL: "vm"}


def test_a_migration_without_vmi_name_is_refused() -> None:
    assert _refusal(_Cluster(_vmi()), _migration(None)) == ("spec.vmiName", "vmiName is missing")


def test_a_migration_of_a_missing_vmi_is_refused() -> None:
    assert _refusal(_Cluster(None), _migration()) == ("spec.vmiName", 'the VMI "ns/vm" does not exist')


def test_a_migration_of_a_final_vmi_is_refused() -> None:
    assert _refusal(_Cluster(_vmi("Succeeded")), _migration())[1] == "Cannot migrate VMI in finalized state."


def test_a_migration_of_a_vmi_that_is_not_live_migratable_is_refused() -> None:
    blocked = Condition(type="LiveMigratable", status="False", reason="DisksNotLiveMigratable", message="m")
    assert _refusal(_Cluster(_vmi(conditions=[blocked])), _migration())[1] == (
        "Cannot migrate VMI, Reason: DisksNotLiveMigratable, Message: m"
    )


def test_a_second_migration_while_one_is_in_flight_is_refused() -> None:
    cluster = _Cluster(_vmi(), [_migration(phase="Running")])
    assert _refusal(cluster, _migration())[1].startswith("in-flight migration detected.")


def test_a_finished_migration_does_not_block_a_new_one() -> None:
    cluster = _Cluster(_vmi(), [_migration(phase="Failed")])
    assert _admit(cluster, _migration())["spec"] == {"vmiName": "vm"}


def test_an_invalid_added_node_selector_is_refused_naming_the_field() -> None:
    new = _migration()
    new["spec"]["addedNodeSelector"] = {"zone": "not a label value"}
    assert _refusal(_Cluster(_vmi()), new)[0] == "spec.addedNodeSelector[zone]"


def test_the_spec_of_a_migration_cannot_change() -> None:
    old = _migration(phase="Running")
    new = _migration("other", phase="Running")
    assert _refusal(_Cluster(_vmi()), new, old) == ("spec", "update of Migration object's spec is restricted")
