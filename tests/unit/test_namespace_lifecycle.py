"""The namespace controller's decision and the Namespace admitter (create, update, status rules)."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.errors import InvalidObjectError
from vmplane.apiserver.namespaces import NamespaceAdmitter, finalizer_causes
from vmplane.controller.namespace_lifecycle import CONDITION_TYPES, decide, with_failures

VMS = "virtualmachines.kubevirt.io"
VMIS = "virtualmachineinstances.kubevirt.io"
REVISIONS = "controllerrevisions.apps"
EVENTS = "events"


def namespace(*, deleting: bool = True, finalizers: tuple[str, ...] = ("kubernetes",)) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "x"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata,
        "spec": {"finalizers": list(finalizers)},
    }


def item(name: str, *, deleting: bool = False, finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "x", "finalizers": list(finalizers)}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": metadata}


def conditions(plan: Any) -> dict[str, dict[str, str]]:
    return {c["type"]: dict(c) for c in plan.conditions}


def test_an_active_namespace_is_left_alone() -> None:
    plan = decide(namespace(deleting=False), {VMS: [item("vm")]})
    assert (plan.delete, plan.finalize, plan.conditions) == ((), False, ())


def test_a_terminating_namespace_without_the_kubernetes_finalizer_is_left_alone() -> None:
    plan = decide(namespace(finalizers=("example.com/other",)), {VMS: [item("vm")]})
    assert (plan.delete, plan.finalize) == ((), False)


def test_virtual_machines_are_deleted_before_anything_else() -> None:
    plan = decide(namespace(), {VMS: [item("vm")], VMIS: [item("vm")], REVISIONS: [item("rev")]})
    assert plan.delete == ((VMS, "vm"),)
    assert plan.waiting


def test_the_rest_is_deleted_once_no_virtual_machine_remains() -> None:
    plan = decide(namespace(), {VMS: [], VMIS: [item("vm")], REVISIONS: [item("rev")], EVENTS: [item("e")]})
    assert set(plan.delete) == {(VMIS, "vm"), (REVISIONS, "rev"), (EVENTS, "e")}


def test_objects_already_being_deleted_are_not_deleted_again() -> None:
    plan = decide(namespace(), {VMIS: [item("vm", deleting=True, finalizers=("vmplane.io/machine",))]})
    assert plan.delete == ()
    assert plan.waiting
    assert not plan.finalize


def test_remaining_content_and_finalizers_are_reported_with_upstreams_messages() -> None:
    plan = decide(namespace(), {VMIS: [item("vm", deleting=True, finalizers=("vmplane.io/machine",))]})
    reported = conditions(plan)
    assert tuple(reported) == CONDITION_TYPES
    assert reported["NamespaceContentRemaining"] == {
        "type": "NamespaceContentRemaining",
        "status": "True",
        "reason": "SomeResourcesRemain",
        "message": "Some resources are remaining: "
        "virtualmachineinstances.kubevirt.io has 1 resource instances",
    }
    assert reported["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: vmplane.io/machine in 1 resource instances"
    )
    assert reported["NamespaceDeletionContentFailure"]["reason"] == "ContentDeleted"


def test_an_empty_terminating_namespace_is_finalized() -> None:
    plan = decide(namespace(), {VMS: [], EVENTS: []})
    assert plan.finalize
    assert not plan.waiting
    assert conditions(plan)["NamespaceContentRemaining"]["reason"] == "ContentRemoved"


def test_failed_deletes_are_reported_as_a_content_failure() -> None:
    plan = decide(namespace(), {VMIS: [item("vm")]})
    failed = conditions_of(with_failures(plan.conditions, ['virtualmachineinstances.kubevirt.io "vm": boom']))
    assert failed["NamespaceDeletionContentFailure"] == {
        "type": "NamespaceDeletionContentFailure",
        "status": "True",
        "reason": "ContentDeletionFailed",
        "message": "Failed to delete all resource types, 1 remaining: "
        'virtualmachineinstances.kubevirt.io "vm": boom',
    }


def test_no_failures_leave_the_conditions_as_they_are() -> None:
    plan = decide(namespace(), {VMIS: [item("vm")]})
    assert with_failures(plan.conditions, []) == plan.conditions


def conditions_of(reported: Any) -> dict[str, dict[str, str]]:
    return {c["type"]: dict(c) for c in reported}


def _admit(operation: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    admitted = NamespaceAdmitter().admit(
        operation=operation,  # type: ignore[arg-type]
        new=new,
        old=old,
        field_validation="Strict",
        dry_run=False,
    )
    return admitted.object


def test_a_created_namespace_is_active_with_the_kubernetes_finalizer() -> None:
    created = _admit("CREATE", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert (created["spec"], created["status"]) == ({"finalizers": ["kubernetes"]}, {"phase": "Active"})


def test_a_created_namespace_keeps_its_own_finalizers_before_kubernetes() -> None:
    created = _admit("CREATE", {**namespace(deleting=False, finalizers=("example.com/f",))})
    assert created["spec"]["finalizers"] == ["example.com/f", "kubernetes"]


def test_an_update_cannot_change_spec_finalizers() -> None:
    old = namespace(deleting=False)
    updated = _admit("UPDATE", {**old, "spec": {"finalizers": []}}, old)
    assert updated["spec"]["finalizers"] == ["kubernetes"]


def test_an_active_phase_on_a_terminating_namespace_is_refused() -> None:
    old = {**namespace(), "status": {"phase": "Terminating"}}
    with pytest.raises(InvalidObjectError) as caught:
        _admit("UPDATE", {**old, "status": {"phase": "Active"}}, old)
    assert caught.value.causes[0].field == "status.Phase"
    assert "only be in terminating status if it has a deletion timestamp" in caught.value.causes[0].message


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param("kubernetes", "spec.finalizers", id="not-a-list"),
        pytest.param(["ok", "not ok"], "spec.finalizers[1]", id="not-a-qualified-name"),
        pytest.param([3], "spec.finalizers[0]", id="not-a-string"),
    ],
)
def test_bad_spec_finalizers_name_the_field(value: object, field: str) -> None:
    assert [c.field for c in finalizer_causes(value)] == [field]
