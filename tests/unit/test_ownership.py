"""``api.ownership``: which VMI a VM controls, adoption, orphaning, and the deletion finalizers.

The rules are Kubernetes' controller-ref manager (``ClaimObject``), as KubeVirt's VM controller uses
it for its VMI (``ClaimVirtualMachineInstanceByName``), and kube-apiserver's handling of the
``orphan`` finalizer on delete.
"""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.metadata_validation import metadata_causes
from vmplane.api.ownership import (
    Claim,
    adopted,
    claim,
    collectable,
    controller_of,
    controller_reference,
    orphaned,
)

VM_UID = "vm-uid"
OTHER_UID = "other-uid"


def ref(uid: str, *, controller: bool | None = True, name: str = "vm") -> dict[str, Any]:
    reference: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "name": name,
        "uid": uid,
    }
    if controller is not None:
        reference["controller"] = controller
    return reference


def vmi(*refs: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "vm", "namespace": "ns", "uid": "vmi-uid"}
    if refs:
        metadata["ownerReferences"] = list(refs)
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T21:00:00Z"
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": metadata}


@pytest.mark.parametrize(
    ("dependent", "owner_deleting", "expected"),
    [
        pytest.param(vmi(ref(VM_UID)), False, Claim.OWNED, id="controller-ref-with-our-uid-is-owned"),
        pytest.param(vmi(ref(VM_UID)), True, Claim.OWNED, id="still-owned-while-the-vm-is-deleted"),
        pytest.param(vmi(ref(OTHER_UID)), False, Claim.FOREIGN, id="controller-ref-with-another-uid"),
        pytest.param(vmi(ref(OTHER_UID, name="other")), False, Claim.FOREIGN, id="controlled-by-another-vm"),
        pytest.param(vmi(), False, Claim.ADOPT, id="no-owner-is-adopted"),
        pytest.param(
            vmi(ref(OTHER_UID, controller=False)), False, Claim.ADOPT, id="non-controller-owner-is-adopted"
        ),
        pytest.param(
            vmi(ref(VM_UID, controller=None)), False, Claim.ADOPT, id="our-uid-without-controller-true"
        ),
        pytest.param(vmi(), True, Claim.LEFT_ALONE, id="a-vm-being-deleted-adopts-nothing"),
        pytest.param(vmi(deleting=True), False, Claim.LEFT_ALONE, id="a-vmi-being-deleted-is-not-adopted"),
    ],
)
def test_claim_follows_the_controller_ref_manager(
    dependent: dict[str, Any], owner_deleting: bool, expected: Claim
) -> None:
    assert claim(owner_uid=VM_UID, owner_deleting=owner_deleting, dependent=dependent) is expected


def test_controller_of_is_the_reference_with_controller_true() -> None:
    meta = vmi(ref(OTHER_UID, controller=False), ref(VM_UID))["metadata"]
    assert controller_of(meta) == ref(VM_UID)
    assert controller_of(vmi(ref(OTHER_UID, controller=False))["metadata"]) is None


def test_adoption_adds_the_controller_reference_and_keeps_other_owners() -> None:
    reference = controller_reference(
        api_version="kubevirt.io/v1", kind="VirtualMachine", name="vm", uid=VM_UID
    )
    result = adopted(vmi(ref(OTHER_UID, controller=False)), reference)
    assert result["metadata"]["ownerReferences"] == [ref(OTHER_UID, controller=False), reference]
    assert reference == {**ref(VM_UID), "blockOwnerDeletion": True}


def test_adoption_does_not_change_its_argument() -> None:
    original = vmi()
    adopted(original, ref(VM_UID))
    assert "ownerReferences" not in original["metadata"]


def test_orphaning_removes_only_the_owners_references() -> None:
    result = orphaned(vmi(ref(VM_UID), ref(OTHER_UID, controller=False)), VM_UID)
    assert result is not None
    assert result["metadata"]["ownerReferences"] == [ref(OTHER_UID, controller=False)]


def test_orphaning_the_last_reference_drops_the_field() -> None:
    result = orphaned(vmi(ref(VM_UID)), VM_UID)
    assert result is not None
    assert "ownerReferences" not in result["metadata"]


def test_orphaning_a_dependent_of_someone_else_changes_nothing() -> None:
    assert orphaned(vmi(ref(OTHER_UID)), VM_UID) is None
    assert orphaned(vmi(), VM_UID) is None


def test_an_object_has_at_most_one_controller_reference() -> None:
    metadata = {"name": "vm", "ownerReferences": [ref(VM_UID), ref(OTHER_UID, name="other")]}
    causes = metadata_causes(metadata)
    assert [(c.field, c.message) for c in causes] == [
        (
            "metadata.ownerReferences",
            'Invalid value: Only one reference can have Controller set to true. Found "true" in references '
            "for VirtualMachine/vm and VirtualMachine/other",
        )
    ]


def test_owner_reference_flags_must_be_booleans() -> None:
    metadata = {"name": "vm", "ownerReferences": [{**ref(VM_UID), "controller": "true"}]}
    causes = metadata_causes(metadata)
    assert [(c.field, c.message) for c in causes] == [
        ("metadata.ownerReferences[0].controller", "Invalid value: must be a boolean")
    ]


@pytest.mark.parametrize(
    ("dependent", "live_uid", "expected"),
    [
        pytest.param(vmi(ref(VM_UID)), None, True, id="its-vm-is-gone"),
        pytest.param(vmi(ref(VM_UID)), OTHER_UID, True, id="a-new-vm-of-the-name-is-not-its-owner"),
        pytest.param(vmi(ref(VM_UID)), VM_UID, False, id="its-vm-is-there"),
        pytest.param(vmi(), None, False, id="a-standalone-vmi-is-never-garbage"),
        pytest.param(
            vmi(ref(VM_UID, controller=False)), None, False, id="a-non-controller-owner-does-not-count"
        ),
        pytest.param(vmi(ref(VM_UID, name="other")), None, False, id="a-vm-of-another-name-is-not-looked-up"),
        pytest.param(vmi(ref(VM_UID), deleting=True), None, False, id="already-being-deleted"),
        pytest.param(
            vmi({**ref(VM_UID), "apiVersion": "example.com/v1"}),
            None,
            False,
            id="a-virtualmachine-of-another-group",
        ),
    ],
)
def test_a_vmi_is_collected_only_when_its_controlling_vm_is_gone(
    dependent: dict[str, Any], live_uid: str | None, expected: bool
) -> None:
    assert (
        collectable(dependent, api_group="kubevirt.io", kind="VirtualMachine", live_uid=live_uid) is expected
    )
