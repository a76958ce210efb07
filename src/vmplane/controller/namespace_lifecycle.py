"""What the namespace controller does about a namespace being deleted. Pure.

As kube-controller-manager's namespace deleter (``namespaced_resources_deleter.go``): while a
namespace is marked for deletion and still holds the ``kubernetes`` finalizer in ``spec.finalizers``,
everything in it is deleted; once nothing is left, the finalizer is removed (through the
``finalize`` subresource's rule) and the namespace goes. The conditions it reports on the
namespace are upstream's, with upstream's reasons and messages.

vmplane's one ordering rule: VirtualMachines go first, and nothing else is deleted while one
remains, so each VM's controller stops its guest through the VMI's own finalizer before the VMI,
its ControllerRevisions and its Events are swept away.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmplane.api.deletion import NAMESPACE_FINALIZER
from vmplane.api.resources import VIRTUAL_MACHINES

__all__ = ["CONDITION_TYPES", "NamespacePlan", "decide", "with_failures"]

#: The condition types of a terminating namespace, in the order Kubernetes lists them.
CONDITION_TYPES = (
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
)


@dataclass(frozen=True, slots=True)
class NamespacePlan:
    """Delete ``delete`` (store resource, name), then report ``conditions``; ``finalize`` once empty."""

    delete: tuple[tuple[str, str], ...] = ()
    conditions: tuple[Mapping[str, str], ...] = ()
    finalize: bool = False
    waiting: bool = False


def _condition(kind: str, status: bool, reason: str, message: str) -> Mapping[str, str]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message}


def _conditions(remaining: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[Mapping[str, str], ...]:
    counts = {resource: len(items) for resource, items in remaining.items() if items}
    finalizers: Counter[str] = Counter()
    for items in remaining.values():
        for item in items:
            finalizers.update((item.get("metadata") or {}).get("finalizers") or ())
    content = (
        _condition(
            "NamespaceContentRemaining",
            True,
            "SomeResourcesRemain",
            "Some resources are remaining: "
            + ", ".join(
                f"{resource} has {count} resource instances" for resource, count in sorted(counts.items())
            ),
        )
        if counts
        else _condition(
            "NamespaceContentRemaining", False, "ContentRemoved", "All content successfully removed"
        )
    )
    held = (
        _condition(
            "NamespaceFinalizersRemaining",
            True,
            "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: "
            + ", ".join(
                f"{name} in {count} resource instances" for name, count in sorted(finalizers.items())
            ),
        )
        if finalizers
        else _condition(
            "NamespaceFinalizersRemaining",
            False,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    )
    return (
        _condition(
            "NamespaceDeletionDiscoveryFailure",
            False,
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        _condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            False,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        _condition(
            "NamespaceDeletionContentFailure",
            False,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        content,
        held,
    )


def decide(
    namespace: Mapping[str, Any], contents: Mapping[str, Sequence[Mapping[str, Any]]]
) -> NamespacePlan:
    """The next step for ``namespace``, given every object in it per store resource."""
    metadata = namespace.get("metadata") or {}
    spec = namespace.get("spec")
    finalizers = (spec.get("finalizers") if isinstance(spec, Mapping) else None) or ()
    if not metadata.get("deletionTimestamp") or NAMESPACE_FINALIZER not in finalizers:
        return NamespacePlan()
    remaining = {resource: list(items) for resource, items in contents.items() if items}
    if not remaining:
        return NamespacePlan(conditions=_conditions({}), finalize=True)
    first = [VIRTUAL_MACHINES] if remaining.get(VIRTUAL_MACHINES) else sorted(remaining)
    delete = tuple(
        (resource, str(item["metadata"]["name"]))
        for resource in first
        for item in remaining.get(resource, ())
        if not item["metadata"].get("deletionTimestamp")
    )
    return NamespacePlan(delete=delete, conditions=_conditions(remaining), waiting=True)


def with_failures(
    conditions: Sequence[Mapping[str, str]], failures: Sequence[str]
) -> tuple[Mapping[str, str], ...]:
    """``conditions`` with ``NamespaceDeletionContentFailure`` True when deletes failed (``failures``)."""
    if not failures:
        return tuple(conditions)
    failed = _condition(
        "NamespaceDeletionContentFailure",
        True,
        "ContentDeletionFailed",
        f"Failed to delete all resource types, {len(failures)} remaining: " + ", ".join(failures),
    )
    return tuple(failed if c["type"] == failed["type"] else c for c in conditions)
