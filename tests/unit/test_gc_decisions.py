"""The garbage collector's decision (``controller.garbage_collection``) and the deletion finalizers."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.deletion import PropagationPolicy, finalizers_for_deletion
from vmplane.controller.garbage_collection import (
    DeleteItem,
    Dependent,
    DropOwnerReferences,
    ItemKey,
    OrphanDependents,
    OwnerRef,
    OwnerState,
    RemoveFinalizer,
    decide,
    owner_refs,
    owner_state,
)

VMS = "virtualmachines.kubevirt.io"
VMIS = "virtualmachineinstances.kubevirt.io"
REVISIONS = "controllerrevisions.apps"
ORPHAN, FOREGROUND, BACKGROUND = (
    PropagationPolicy.ORPHAN,
    PropagationPolicy.FOREGROUND,
    PropagationPolicy.BACKGROUND,
)
SOLID, ABSENT, WAITING, UNKNOWN = OwnerState.SOLID, OwnerState.ABSENT, OwnerState.WAITING, OwnerState.UNKNOWN


def ref(uid: str, *, block: bool = False) -> OwnerRef:
    return OwnerRef(uid=uid, key=ItemKey(VMS, "d", f"vm-{uid}"), block=block)


def obj(*, uid: str = "me", deleting: bool = False, finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "x", "namespace": "d", "uid": uid, "finalizers": list(finalizers)}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": metadata}


REVISION = ItemKey(REVISIONS, "d", "rev")
VMI = ItemKey(VMIS, "d", "x")


@pytest.mark.parametrize(
    ("item", "refs", "owners", "dependents", "expected"),
    [
        pytest.param(obj(), [], {}, [], (), id="no-owner-nothing"),
        pytest.param(obj(), [ref("a")], {"a": SOLID}, [], (), id="owner-exists-nothing"),
        pytest.param(obj(), [ref("a")], {"a": ABSENT}, [], (DeleteItem(BACKGROUND),), id="owner-gone-delete"),
        pytest.param(
            obj(),
            [ref("a"), ref("b")],
            {"a": ABSENT, "b": SOLID},
            [],
            (DropOwnerReferences(("a",)),),
            id="one-of-two-owners-gone-drop-its-reference",
        ),
        pytest.param(
            obj(),
            [ref("a"), ref("b")],
            {"a": WAITING, "b": SOLID},
            [],
            (DropOwnerReferences(("a",)),),
            id="waiting-owner-with-another-solid-owner-drop-reference",
        ),
        pytest.param(
            obj(), [ref("a")], {"a": WAITING}, [], (DeleteItem(BACKGROUND),), id="waiting-owner-delete"
        ),
        pytest.param(
            obj(),
            [ref("a")],
            {"a": WAITING},
            [Dependent(REVISION, blocks=True, deleting=False)],
            (DeleteItem(FOREGROUND),),
            id="waiting-owner-and-own-dependents-delete-foreground",
        ),
        pytest.param(obj(), [ref("a")], {"a": UNKNOWN}, [], (), id="unknown-owner-kind-is-never-collected"),
        pytest.param(
            obj(finalizers=("orphan",)),
            [ref("a")],
            {"a": ABSENT},
            [],
            (DeleteItem(ORPHAN),),
            id="own-orphan-finalizer-honoured",
        ),
        pytest.param(
            obj(deleting=True), [ref("a")], {"a": ABSENT}, [], (), id="being-deleted-not-collected-again"
        ),
        pytest.param(
            obj(deleting=True, finalizers=("orphan",)),
            [],
            {},
            [Dependent(REVISION, blocks=True, deleting=False), Dependent(VMI, blocks=True, deleting=False)],
            (OrphanDependents("me", (REVISION, VMI)), RemoveFinalizer("orphan")),
            id="orphan-frees-dependents-first",
        ),
        pytest.param(
            obj(deleting=True, finalizers=("foregroundDeletion",)),
            [],
            {},
            [Dependent(VMI, blocks=True, deleting=True)],
            (),
            id="foreground-waits-for-a-blocking-dependent",
        ),
        pytest.param(
            obj(deleting=True, finalizers=("foregroundDeletion",)),
            [],
            {},
            [Dependent(REVISION, blocks=False, deleting=False)],
            (RemoveFinalizer("foregroundDeletion"),),
            id="foreground-does-not-wait-for-non-blocking-dependents",
        ),
        pytest.param(
            obj(deleting=True, finalizers=("foregroundDeletion",)),
            [],
            {},
            [],
            (RemoveFinalizer("foregroundDeletion"),),
            id="foreground-done-when-no-dependents",
        ),
    ],
)
def test_decide(
    item: dict[str, Any],
    refs: list[OwnerRef],
    owners: dict[str, OwnerState],
    dependents: list[Dependent],
    expected: tuple[object, ...],
) -> None:
    assert decide(item, refs=refs, owners=owners, dependents=dependents) == expected


def test_an_event_goes_when_the_object_it_is_about_is_gone() -> None:
    event = {
        "metadata": {"name": "e", "namespace": "d", "uid": "ev"},
        "involvedObject": {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": "vm",
            "uid": "a",
        },
    }
    refs = owner_refs("events", event)
    assert refs == [OwnerRef(uid="a", key=ItemKey(VMS, "d", "vm"), involved=True)]
    assert decide(event, refs=refs, owners={"a": ABSENT}, dependents=[]) == (DeleteItem(BACKGROUND),)


def test_an_events_involved_object_is_never_dropped_as_a_reference() -> None:
    event = {
        "metadata": {
            "name": "e",
            "namespace": "d",
            "uid": "ev",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n1"}],
        },
        "involvedObject": {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": "vm",
            "uid": "a",
        },
    }
    refs = owner_refs("events", event)
    assert decide(event, refs=refs, owners={"a": ABSENT, "n1": SOLID}, dependents=[]) == ()


def test_owner_references_resolve_cluster_scoped_owners_without_namespace() -> None:
    revision = {
        "metadata": {
            "name": "r",
            "namespace": "d",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "1", "blockOwnerDeletion": True},
                {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "2"},
            ],
        }
    }
    assert owner_refs(REVISIONS, revision) == [
        OwnerRef(uid="1", key=ItemKey("nodes", "", "n"), block=True),
        OwnerRef(uid="2", key=None),
    ]


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(None, ABSENT, id="missing"),
        pytest.param({"metadata": {"uid": "other"}}, ABSENT, id="same-name-other-uid"),
        pytest.param({"metadata": {"uid": "a"}}, SOLID, id="exists"),
        pytest.param(
            {"metadata": {"uid": "a", "deletionTimestamp": "t", "finalizers": ["orphan"]}},
            SOLID,
            id="being-orphaned-still-solid",
        ),
        pytest.param(
            {"metadata": {"uid": "a", "deletionTimestamp": "t", "finalizers": ["foregroundDeletion"]}},
            WAITING,
            id="foreground-waiting",
        ),
    ],
)
def test_owner_state(found: dict[str, Any] | None, expected: OwnerState) -> None:
    assert owner_state(ref("a"), found) is expected


@pytest.mark.parametrize(
    ("finalizers", "policy", "expected"),
    [
        pytest.param([], None, None, id="no-policy-no-change"),
        pytest.param([], BACKGROUND, None, id="background-adds-nothing"),
        pytest.param([], ORPHAN, ["orphan"], id="orphan-adds-orphan"),
        pytest.param(["x"], FOREGROUND, ["x", "foregroundDeletion"], id="foreground-keeps-others"),
        pytest.param(["orphan"], FOREGROUND, ["foregroundDeletion"], id="foreground-replaces-orphan"),
        pytest.param(["foregroundDeletion", "x"], BACKGROUND, ["x"], id="background-drops-both"),
        pytest.param(["orphan", "x"], ORPHAN, None, id="already-orphaning"),
    ],
)
def test_finalizers_for_deletion(
    finalizers: list[str], policy: PropagationPolicy | None, expected: list[str] | None
) -> None:
    assert finalizers_for_deletion(finalizers, policy) == expected
