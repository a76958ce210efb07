"""What Kubernetes' garbage collector does about one object, decided from what exists. Pure.

The rules are ``attemptToDeleteItem``, ``orphanDependents`` and ``processDeletingDependentsItem`` of
kube-controller-manager's garbage collector:

* An object none of whose owners exists any more (an owner is gone, or its uid differs) is deleted,
  Background unless it carries an ``orphan`` or ``foregroundDeletion`` finalizer of its own. If some
  owner still exists, only the references to the vanished owners (and to owners being deleted in the
  foreground) are dropped.
* An object whose owner is being deleted in the foreground (``foregroundDeletion``) and that has
  dependents itself is deleted in the foreground too, so the deletion cascades down the tree.
* An owner being deleted with the ``orphan`` finalizer has its reference removed from every
  dependent, then loses the finalizer (and so goes).
* An owner being deleted with ``foregroundDeletion`` loses the finalizer once no dependent whose
  reference has ``blockOwnerDeletion: true`` exists (a dependent still stopping its guest blocks).
* vmplane's addition: an Event goes with the object it is about (``involvedObject.uid``), as the
  object's other dependents do; Kubernetes lets them expire after an hour instead.

Owners of kinds the collector does not know are treated as existing: it never deletes what it
cannot check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from vmplane.api.deletion import FOREGROUND_FINALIZER, ORPHAN_FINALIZER, PropagationPolicy
from vmplane.api.resources import (
    CONTROLLER_REVISIONS,
    EVENTS,
    KUBEVIRTS,
    NAMESPACES,
    NODES,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
)

__all__ = [
    "KINDS",
    "Action",
    "DeleteItem",
    "Dependent",
    "DropOwnerReferences",
    "ItemKey",
    "OrphanDependents",
    "OwnerRef",
    "OwnerState",
    "RemoveFinalizer",
    "decide",
    "owner_refs",
    "owner_state",
]

#: (group, kind) -> (store resource, namespaced): the kinds whose objects the collector can look up.
KINDS: Mapping[tuple[str, str], tuple[str, bool]] = {
    ("kubevirt.io", "VirtualMachine"): (VIRTUAL_MACHINES, True),
    ("kubevirt.io", "VirtualMachineInstance"): (VIRTUAL_MACHINE_INSTANCES, True),
    ("kubevirt.io", "KubeVirt"): (KUBEVIRTS, True),
    ("apps", "ControllerRevision"): (CONTROLLER_REVISIONS, True),
    ("", "Event"): (EVENTS, True),
    ("", "Namespace"): (NAMESPACES, False),
    ("", "Node"): (NODES, False),
}


class ItemKey(NamedTuple):
    """One object: its store resource, namespace (``""`` when cluster-scoped) and name."""

    resource: str
    namespace: str
    name: str


class OwnerState(str, Enum):
    """What the collector found at an owner reference."""

    ABSENT = "Absent"  # no object of that name, or one with another uid
    SOLID = "Solid"  # exists and is not waiting for its dependents
    WAITING = "Waiting"  # being deleted with foregroundDeletion
    UNKNOWN = "Unknown"  # a kind the collector cannot look up: treated as existing


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A reference to an owner (an ownerReference, or an Event's involvedObject)."""

    uid: str
    key: ItemKey | None  # None when the kind is not in ``KINDS``
    block: bool = False
    involved: bool = False  # an Event's involvedObject, not an ownerReference


@dataclass(frozen=True, slots=True)
class Dependent:
    """An object referring to the owner being decided about."""

    key: ItemKey
    blocks: bool  # its reference to the owner has blockOwnerDeletion: true
    deleting: bool


@dataclass(frozen=True, slots=True)
class DeleteItem:
    """Delete the object itself with this propagation policy."""

    policy: PropagationPolicy


@dataclass(frozen=True, slots=True)
class DropOwnerReferences:
    """Remove the ownerReferences with these uids from the object itself."""

    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OrphanDependents:
    """Remove the reference to the object (``owner_uid``) from each of these dependents."""

    owner_uid: str
    dependents: tuple[ItemKey, ...]


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    """Remove this finalizer from the object itself."""

    finalizer: str


Action = DeleteItem | DropOwnerReferences | OrphanDependents | RemoveFinalizer


def _group(api_version: object) -> str:
    text = str(api_version or "")
    return text.rpartition("/")[0] if "/" in text else ""


def _ref(reference: Mapping[str, Any], namespace: str, *, involved: bool) -> OwnerRef | None:
    uid = reference.get("uid")
    if not isinstance(uid, str) or not uid:
        return None
    kind = KINDS.get((_group(reference.get("apiVersion")), str(reference.get("kind", ""))))
    key = None
    if kind is not None:
        resource, namespaced = kind
        # A cluster-scoped object cannot have a namespaced owner: leave such a reference alone.
        if not (namespaced and not namespace):
            key = ItemKey(resource, namespace if namespaced else "", str(reference.get("name", "")))
    return OwnerRef(uid=uid, key=key, block=reference.get("blockOwnerDeletion") is True, involved=involved)


def owner_refs(resource: str, obj: Mapping[str, Any]) -> list[OwnerRef]:
    """The references that make ``obj`` (of store resource ``resource``) a dependent."""
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    refs = [
        ref
        for reference in metadata.get("ownerReferences") or ()
        if isinstance(reference, Mapping) and (ref := _ref(reference, namespace, involved=False))
    ]
    involved = obj.get("involvedObject")
    if resource == EVENTS and isinstance(involved, Mapping):
        involved_namespace = str(involved.get("namespace") or namespace)
        ref = _ref(involved, involved_namespace, involved=True)
        if ref is not None:
            refs.append(ref)
    return refs


def owner_state(ref: OwnerRef, found: Mapping[str, Any] | None) -> OwnerState:
    """What the object ``found`` at ``ref.key`` (None: nothing there) means for the reference."""
    if ref.key is None:
        return OwnerState.UNKNOWN
    metadata = (found or {}).get("metadata") or {}
    if found is None or metadata.get("uid") != ref.uid:
        return OwnerState.ABSENT
    if metadata.get("deletionTimestamp") and FOREGROUND_FINALIZER in (metadata.get("finalizers") or ()):
        return OwnerState.WAITING
    return OwnerState.SOLID


def _finalizers(obj: Mapping[str, Any]) -> Sequence[str]:
    return (obj.get("metadata") or {}).get("finalizers") or ()


def decide(
    obj: Mapping[str, Any],
    *,
    refs: Sequence[OwnerRef],
    owners: Mapping[str, OwnerState],
    dependents: Sequence[Dependent],
) -> tuple[Action, ...]:
    """What to do about ``obj``: its references ``refs`` resolved to ``owners`` (by uid), and the
    objects that refer to it. An empty answer means nothing to do now."""
    metadata = obj.get("metadata") or {}
    finalizers = _finalizers(obj)
    if metadata.get("deletionTimestamp"):
        uid = str(metadata.get("uid", ""))
        if ORPHAN_FINALIZER in finalizers:
            return (
                OrphanDependents(uid, tuple(d.key for d in dependents)),
                RemoveFinalizer(ORPHAN_FINALIZER),
            )
        if FOREGROUND_FINALIZER in finalizers and not any(d.blocks for d in dependents):
            return (RemoveFinalizer(FOREGROUND_FINALIZER),)
        return ()
    if not refs:
        return ()
    states = {ref.uid: owners.get(ref.uid, OwnerState.ABSENT) for ref in refs}
    solid = [uid for uid, state in states.items() if state in (OwnerState.SOLID, OwnerState.UNKNOWN)]
    waiting = [uid for uid, state in states.items() if state is OwnerState.WAITING]
    if solid:
        droppable = {ref.uid for ref in refs if not ref.involved}
        gone = tuple(uid for uid, state in states.items() if uid not in solid and uid in droppable)
        return (DropOwnerReferences(gone),) if gone else ()
    if waiting and dependents:
        return (DeleteItem(PropagationPolicy.FOREGROUND),)
    if ORPHAN_FINALIZER in finalizers:
        return (DeleteItem(PropagationPolicy.ORPHAN),)
    if FOREGROUND_FINALIZER in finalizers:
        return (DeleteItem(PropagationPolicy.FOREGROUND),)
    return (DeleteItem(PropagationPolicy.BACKGROUND),)
