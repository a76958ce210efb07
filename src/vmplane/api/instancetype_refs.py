"""How a VM refers to its instance type and preference, and the ControllerRevision snapshots of them.

A VM uses the snapshot its status names (``status.instancetypeRef.controllerRevisionRef``) or the
one its ``revisionName`` pins, never the live object once it has one: editing an instance type does
not silently change the VMs using it. Revision names and labels are upstream's
(``revision.GenerateName``: ``<vm>-<object>-<version>-<uid>-<generation>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.instancetype import (
    CLUSTER_INSTANCETYPE,
    CLUSTER_PREFERENCE,
    INSTANCETYPE,
    INSTANCETYPE_GROUP,
    INSTANCETYPE_VERSION,
    PREFERENCE,
    InstancetypeSpec,
    PreferenceSpec,
    VirtualMachineInstancetype,
    VirtualMachinePreference,
)
from vmplane.api.ownership import controller_reference
from vmplane.api.resources import (
    CLUSTER_INSTANCETYPES,
    CLUSTER_PREFERENCES,
    CONTROLLER_REVISIONS,
    INSTANCETYPES,
    PREFERENCES,
)
from vmplane.api.vm import InstancetypeMatcher, InstancetypeStatusRef, VirtualMachine

__all__ = [
    "UNKNOWN_KIND",
    "Lookup",
    "Resolution",
    "instancetype_kind",
    "is_namespaced",
    "pinned_revision",
    "preference_kind",
    "referenced_spec",
    "resolve",
    "revision_name",
    "snapshot",
    "status_ref",
    "store_resource",
]

#: Reads one object: (store resource, namespace or "", name) -> the object or None.
Lookup = Callable[[str, str, str], dict[str, Any] | None]

#: ``kind`` -> the store resource holding objects of that kind.
_RESOURCES = {
    INSTANCETYPE: INSTANCETYPES,
    CLUSTER_INSTANCETYPE: CLUSTER_INSTANCETYPES,
    PREFERENCE: PREFERENCES,
    CLUSTER_PREFERENCE: CLUSTER_PREFERENCES,
}
UNKNOWN_KIND = "got unexpected kind in {matcher}: {kind}"


def _kind(matcher: InstancetypeMatcher, namespaced: str, cluster: str) -> str | None:
    """The kind ``matcher`` names (upstream accepts singular and plural, any case; default cluster)."""
    if matcher.kind is None or matcher.kind == "":
        return cluster
    spelled = matcher.kind.lower()
    for kind in (namespaced, cluster):
        if spelled in (kind.lower(), kind.lower() + "s"):
            return kind
    return None


def instancetype_kind(matcher: InstancetypeMatcher) -> str | None:
    """``VirtualMachineInstancetype`` or ``VirtualMachineClusterInstancetype``; None for another kind."""
    return _kind(matcher, INSTANCETYPE, CLUSTER_INSTANCETYPE)


def preference_kind(matcher: InstancetypeMatcher) -> str | None:
    """``VirtualMachinePreference`` or ``VirtualMachineClusterPreference``; None for another kind."""
    return _kind(matcher, PREFERENCE, CLUSTER_PREFERENCE)


def store_resource(kind: str) -> str:
    """The store resource of one of the four kinds."""
    return _RESOURCES[kind]


def is_namespaced(kind: str) -> bool:
    """Whether objects of the kind live in the VM's namespace (else cluster-wide)."""
    return kind in (INSTANCETYPE, PREFERENCE)


def revision_name(vm_name: str, obj: dict[str, Any]) -> str:
    """Upstream's snapshot name for ``obj`` used by the VM ``vm_name``."""
    meta = obj.get("metadata") or {}
    return (
        f"{vm_name}-{meta.get('name')}-{INSTANCETYPE_VERSION}-{meta.get('uid')}-{meta.get('generation', 1)}"
    )


def snapshot(vm: VirtualMachine, obj: dict[str, Any]) -> dict[str, Any]:
    """The ControllerRevision (wire form) holding ``obj`` for ``vm``: owned by it, labelled as upstream."""
    assert vm.metadata.name is not None
    assert vm.metadata.uid is not None
    meta = obj.get("metadata") or {}
    kept = {
        k: v for k, v in meta.items() if k in ("name", "namespace", "uid", "generation", "resourceVersion")
    }
    data = {
        "apiVersion": f"{INSTANCETYPE_GROUP}/{INSTANCETYPE_VERSION}",
        "kind": obj.get("kind"),
        "metadata": kept,
        "spec": obj.get("spec"),
    }
    prefix = f"{INSTANCETYPE_GROUP}/object-"
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(vm.metadata.name, obj),
            "namespace": vm.metadata.namespace or "default",
            "labels": {
                f"{prefix}generation": str(meta.get("generation", 1)),
                f"{prefix}kind": str(obj.get("kind")),
                f"{prefix}name": str(meta.get("name")),
                f"{prefix}uid": str(meta.get("uid")),
                f"{prefix}version": INSTANCETYPE_VERSION,
            },
            "ownerReferences": [
                controller_reference(
                    api_version=vm.api_version, kind=vm.kind, name=vm.metadata.name, uid=vm.metadata.uid
                )
            ],
        },
        "data": data,
        "revision": 1,
    }


def status_ref(kind: str, name: str, revision: str) -> InstancetypeStatusRef:
    """``status.instancetypeRef`` / ``preferenceRef`` naming the snapshot in use."""
    return InstancetypeStatusRef.model_validate(
        {"kind": kind, "name": name, "controllerRevisionRef": {"name": revision}}
    )


def pinned_revision(matcher: InstancetypeMatcher, kind: str, ref: InstancetypeStatusRef | None) -> str | None:
    """The snapshot the VM must use: its ``revisionName``, else the one its status names for the same
    object (a VM switched to another instance type takes a new snapshot)."""
    if matcher.revision_name:
        return matcher.revision_name
    if ref is not None and ref.kind == kind and ref.name == matcher.name and ref.controller_revision_ref:
        return ref.controller_revision_ref.name
    return None


def referenced_spec(obj: dict[str, Any], *, sized: bool) -> InstancetypeSpec | PreferenceSpec:
    """The spec of a live object or of a snapshot's ``data``."""
    if sized:
        return VirtualMachineInstancetype.model_validate(obj).spec
    return VirtualMachinePreference.model_validate(obj).spec


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a VM's references resolve to now.

    ``new_revisions``: snapshots to store (first use of an object); ``missing``: why a reference
    does not resolve yet (the object does not exist), which does not make the VM invalid, as upstream;
    ``causes``: references that can never resolve (an unknown kind).
    """

    instancetype: InstancetypeSpec | None = None
    preference: PreferenceSpec | None = None
    instancetype_ref: InstancetypeStatusRef | None = None
    preference_ref: InstancetypeStatusRef | None = None
    new_revisions: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    causes: list[FieldCause] = field(default_factory=list)

    @property
    def referenced(self) -> bool:
        """Whether the VM names an instance type or a preference at all."""
        return bool(self.instancetype_ref or self.preference_ref or self.missing or self.causes)


def _one(
    vm: VirtualMachine,
    matcher: InstancetypeMatcher,
    kind: str,
    ref: InstancetypeStatusRef | None,
    lookup: Lookup,
) -> tuple[dict[str, Any] | None, InstancetypeStatusRef | None, dict[str, Any] | None, str | None]:
    """(spec-holding object, status ref, new snapshot, why missing) for one reference."""
    namespace = vm.metadata.namespace or "default"
    pinned = pinned_revision(matcher, kind, ref)
    if pinned is not None:
        revision = lookup(CONTROLLER_REVISIONS, namespace, pinned)
        if revision is None:
            return None, None, None, f'controllerrevisions.apps "{pinned}" not found'
        return revision.get("data") or {}, status_ref(kind, matcher.name, pinned), None, None
    scope = namespace if is_namespaced(kind) else ""
    obj = lookup(store_resource(kind), scope, matcher.name)
    if obj is None:
        plural = store_resource(kind)
        return None, None, None, f'{plural} "{matcher.name}" not found'
    assert vm.metadata.name is not None
    obj = {**obj, "kind": kind}
    name = revision_name(vm.metadata.name, obj)
    # A VM not stored yet (admission of a create) has no uid to own a snapshot: it is taken later.
    fresh = vm.metadata.uid is not None and lookup(CONTROLLER_REVISIONS, namespace, name) is None
    return obj, status_ref(kind, matcher.name, name), snapshot(vm, obj) if fresh else None, None


def resolve(vm: VirtualMachine, lookup: Lookup) -> Resolution:
    """Resolve ``spec.instancetype`` and ``spec.preference`` to the specs the VM uses."""
    status = vm.status
    result: dict[str, Any] = {"new_revisions": [], "missing": [], "causes": []}
    for matcher, kind_of, ref, sized, field_name in (
        (
            vm.spec.instancetype,
            instancetype_kind,
            status.instancetype_ref if status else None,
            True,
            "instancetype",
        ),
        (vm.spec.preference, preference_kind, status.preference_ref if status else None, False, "preference"),
    ):
        if matcher is None:
            continue
        kind = kind_of(matcher)
        if matcher.infer_from_volume is not None:
            message = "Unsupported value: vmplane cannot infer instance types or preferences from volumes"
            result["causes"].append(
                FieldCause(f"spec.{field_name}.inferFromVolume", message, CauseType.FIELD_VALUE_NOT_SUPPORTED)
            )
            continue
        if kind is None:
            message = UNKNOWN_KIND.format(
                matcher="InstancetypeMatcher" if sized else "PreferenceMatcher", kind=matcher.kind
            )
            result["causes"].append(
                FieldCause(f"spec.{field_name}.kind", message, CauseType.FIELD_VALUE_NOT_SUPPORTED)
            )
            continue
        obj, new_ref, revision, missing = _one(vm, matcher, kind, ref, lookup)
        if missing is not None:
            result["missing"].append(missing)
            continue
        assert obj is not None
        result[field_name] = referenced_spec(obj, sized=sized)
        result[f"{field_name}_ref"] = new_ref
        if revision is not None:
            result["new_revisions"].append(revision)
    return Resolution(**result)
