"""Owner references: who controls an object, adoption, orphaning and the deletion finalizers. Pure.

These are Kubernetes' rules as its controllers apply them (``metav1.GetControllerOf``,
``controller_ref_manager.ClaimObject``, the garbage collector's orphaning) and as KubeVirt's VM
controller uses them for its VMI (``ClaimVirtualMachineInstanceByName``): a controller acts only on
the objects whose controller reference carries its uid; it adopts an object of the name it would
create that nobody controls, unless it or the object is being deleted; and an owner deleted with
``propagationPolicy: Orphan`` keeps the ``orphan`` finalizer until its dependents lose their
references to it. Everything here works on wire dicts, as the store holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from vmplane.api.deletion import ORPHAN_FINALIZER

__all__ = [
    "MACHINE_FINALIZER",
    "ORPHAN_FINALIZER",
    "Claim",
    "adopted",
    "claim",
    "collectable",
    "controller_of",
    "controller_reference",
    "orphaned",
]

# Kubernetes' metav1.FinalizerOrphanDependents: the owner waits until its dependents are orphaned.
# Held by the node agent until the guest is stopped, so a deleted VMI outlives its QEMU process.
MACHINE_FINALIZER = "vmplane.io/machine"


def controller_of(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference with ``controller: true`` (there is at most one), or None."""
    for ref in metadata.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def controller_reference(*, api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """The reference a controller puts on what it creates or adopts (as upstream writes it)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Claim(str, Enum):
    """What a controller may do with an object of the name it manages."""

    OWNED = "Owned"  # its controller reference has our uid: act on it
    ADOPT = "Adopt"  # nobody controls it and it may be adopted: take control, then act on it
    FOREIGN = "Foreign"  # another owner controls it: never touch it
    LEFT_ALONE = "LeftAlone"  # nobody controls it, but we or it are being deleted: do not adopt


def claim(*, owner_uid: str, owner_deleting: bool, dependent: Mapping[str, Any]) -> Claim:
    """``ClaimObject``'s rule for one dependent whose name already matches the owner's."""
    metadata = dependent.get("metadata") or {}
    ref = controller_of(metadata)
    if ref is not None:
        return Claim.OWNED if ref.get("uid") == owner_uid else Claim.FOREIGN
    if owner_deleting or metadata.get("deletionTimestamp"):
        return Claim.LEFT_ALONE
    return Claim.ADOPT


def collectable(dependent: Mapping[str, Any], *, api_group: str, kind: str, live_uid: str | None) -> bool:
    """Whether ``dependent`` is garbage: its controller is a ``kind`` of its own name (in
    ``api_group``) and the live object of that name (``live_uid``; None when there is none) is not
    that controller. A dependent being deleted, uncontrolled, or controlled otherwise is not."""
    metadata = dependent.get("metadata") or {}
    ref = controller_of(metadata)
    if ref is None or metadata.get("deletionTimestamp"):
        return False
    if ref.get("kind") != kind or ref.get("name") != metadata.get("name"):
        return False
    if str(ref.get("apiVersion", "")).split("/", 1)[0] != api_group:
        return False
    return ref.get("uid") != live_uid


def adopted(dependent: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """``dependent`` with ``reference`` as its controller; its other (non-controller) owners kept."""
    metadata = dict(dependent.get("metadata") or {})
    others = [r for r in metadata.get("ownerReferences") or () if r.get("uid") != reference.get("uid")]
    metadata["ownerReferences"] = [*others, dict(reference)]
    return {**dependent, "metadata": metadata}


def orphaned(dependent: Mapping[str, Any], owner_uid: str) -> dict[str, Any] | None:
    """``dependent`` without its references to ``owner_uid``, or None when it has none.

    As the garbage collector orphans: the field is dropped when no reference is left.
    """
    metadata = dict(dependent.get("metadata") or {})
    refs = list(metadata.get("ownerReferences") or ())
    kept = [r for r in refs if r.get("uid") != owner_uid]
    if len(kept) == len(refs):
        return None
    if kept:
        metadata["ownerReferences"] = kept
    else:
        metadata.pop("ownerReferences", None)
    return {**dependent, "metadata": metadata}
