"""Deletion propagation as Kubernetes defines it: policies, the garbage-collector finalizers. Pure.

A delete with ``propagationPolicy: Orphan`` (or the older ``orphanDependents: true``) marks the owner
with the ``orphan`` finalizer, ``Foreground`` with ``foregroundDeletion``; the garbage collector
(``controller/garbage_collector.py``) does the work each finalizer stands for and then removes it.
``Background`` (the default) removes the owner at once and lets the collector delete its dependents.
Both the API's delete (``apiserver/deletes.py``) and the collector's own deletes use
``finalizers_for_deletion``, as kube-apiserver's ``deletionFinalizersForGarbageCollection`` is used.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "FOREGROUND_FINALIZER",
    "NAMESPACE_FINALIZER",
    "ORPHAN_FINALIZER",
    "PropagationPolicy",
    "finalizers_for_deletion",
]

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
#: The ``spec.finalizers`` entry of a Namespace held until the namespace controller has emptied it.
NAMESPACE_FINALIZER = "kubernetes"


class PropagationPolicy(str, Enum):
    """``DeleteOptions.propagationPolicy``."""

    ORPHAN = "Orphan"
    BACKGROUND = "Background"
    FOREGROUND = "Foreground"


def finalizers_for_deletion(finalizers: list[str], policy: PropagationPolicy | None) -> list[str] | None:
    """The finalizers a delete under ``policy`` leaves on the object, or None to leave them as they are.

    As kube-apiserver: Orphan adds ``orphan`` and drops ``foregroundDeletion``; Foreground the
    reverse; an explicit Background drops both; no policy changes nothing.
    """
    if policy is None:
        return None
    wanted = {
        PropagationPolicy.ORPHAN: ORPHAN_FINALIZER,
        PropagationPolicy.FOREGROUND: FOREGROUND_FINALIZER,
        PropagationPolicy.BACKGROUND: None,
    }[policy]
    kept = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    result = kept + ([wanted] if wanted is not None else [])
    if wanted in finalizers:
        result = [f for f in finalizers if f == wanted or f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    return None if result == finalizers else result
