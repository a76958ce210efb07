"""Kubernetes object-store rules as pure functions, shared by every Store backend.

A backend only persists text and fans out events; what a create, update or delete *means* (server-set
metadata, optimistic concurrency, generation, finalizers and deletionTimestamp, the status
subresource) is decided here, from the stored object and the request, with no I/O. Keeping one copy
of the rules is what lets the contract suite hold every backend to the same behaviour.

The functions never mutate their arguments; the objects they return may share nested values with
them, which is safe because backends encode the result to JSON text at once.
"""

from __future__ import annotations

import gc
import json
from datetime import datetime
from typing import Any, Literal, NamedTuple

from vmplane.api.timestamps import timestamp
from vmplane.store.base import ConflictError, InvalidObjectError, JsonObject, WatchEventType

__all__ = [
    "Change",
    "ObjectKey",
    "check_version",
    "created",
    "decode_list",
    "decode_request",
    "deleted",
    "encode",
    "request_version",
    "updated",
]

Subresource = Literal["", "status"]

# Fields only the store may set: whatever a client sends for them is replaced by the stored value.
_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# Everything except these top-level keys counts as "spec" for the generation rule, as Kubernetes
# does for custom resources with a status subresource (kind/apiVersion changes bump it too).
_NOT_SPEC = frozenset({"metadata", "status"})


class ObjectKey(NamedTuple):
    """Where an object lives within one resource; the namespace is ``""`` when cluster-scoped."""

    namespace: str
    name: str


class Change(NamedTuple):
    """The outcome of a write: the event it emits and the object as stored (or as last seen)."""

    type: WatchEventType
    object: JsonObject


def encode(obj: JsonObject) -> str:
    """The compact JSON text a backend stores and replays."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_request(obj: object) -> tuple[ObjectKey, JsonObject]:
    """Validate a caller's object and return its key and a private deep copy.

    The JSON round trip is the copy: whatever the caller does to ``obj`` afterwards cannot reach the
    store, and what the store hands back is exactly what JSON can hold. Raises InvalidObjectError.
    """
    try:
        text = json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:  # unserialisable, NaN, cycle, too deep
        raise InvalidObjectError(f"object is not JSON: {err}") from err
    # json.dumps quietly turns int/float/bool/None keys into strings; refuse them instead.
    if not _all_keys_strings(obj):
        _check_keys(obj, "")
    copy = json.loads(text)
    if not isinstance(copy, dict):
        raise InvalidObjectError("object must be a JSON object")
    metadata = copy.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidObjectError("metadata: required object")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObjectError("metadata.name: required")
    namespace = metadata.get("namespace")
    if namespace is None:  # absent, or null as some clients send for "no namespace"
        namespace = ""
    if not isinstance(namespace, str):
        raise InvalidObjectError("metadata.namespace: must be a string")
    finalizers = metadata.get("finalizers", [])
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise InvalidObjectError("metadata.finalizers: must be a list of strings")
    return ObjectKey(namespace, name), copy


def _all_keys_strings(value: object) -> bool:
    """Whether every mapping key in ``value`` is a string: the check every write makes, so it builds
    no paths (``_check_keys`` names the offending one, only once there is one)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str:
                    return False
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return True


def _check_keys(value: object, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidObjectError(f"{path or '<root>'}: key {key!r} is not a string")
            _check_keys(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, f"{path}[{index}]")


def request_version(obj: JsonObject) -> int | None:
    """The resourceVersion a request is conditional on, or None for an unconditional write."""
    version = obj["metadata"].get("resourceVersion")
    if version is None or version == "":
        return None
    if isinstance(version, str) and version.isdigit():
        return int(version)
    raise InvalidObjectError(f"metadata.resourceVersion: {version!r} is not a resource version")


def check_version(stored: JsonObject, expected: int | None) -> None:
    """Raise ConflictError unless ``expected`` is None or the stored object's resourceVersion."""
    current = int(stored["metadata"]["resourceVersion"])
    if expected is not None and expected != current:
        raise ConflictError(
            f"the object has been modified (resourceVersion {expected}, now {current}); "
            "please apply your changes to the latest version and try again"
        )


def created(obj: JsonObject, *, revision: int, uid: str, now: datetime) -> JsonObject:
    """The object as first stored: client values for server fields are replaced, generation is 1.

    ``status`` is kept as sent: which resources ignore status on create is an API-layer decision.
    """
    metadata = _without_server_fields(obj["metadata"])
    metadata.update(uid=uid, resourceVersion=str(revision), generation=1, creationTimestamp=timestamp(now))
    return {**obj, "metadata": metadata}


def updated(old: JsonObject, new: JsonObject, *, revision: int, subresource: Subresource) -> Change:
    """Apply an update request ``new`` to the stored ``old`` (same key).

    A main-resource update takes everything from ``new`` except the server fields and the status; a
    status update takes only the status. Raises ConflictError for a stale resourceVersion and
    InvalidObjectError for a changed uid or a finalizer added to an object being deleted. When the
    object is being deleted and this update empties its finalizers, the change is a DELETED.
    """
    check_version(old, request_version(new))
    old_meta: JsonObject = old["metadata"]
    uid = new["metadata"].get("uid")
    if uid not in (None, "", old_meta["uid"]):
        raise InvalidObjectError(f"metadata.uid: {uid!r} does not match the stored {old_meta['uid']!r}")
    if subresource == "status":
        result = {key: value for key, value in old.items() if key != "status"}
        if "status" in new:
            result["status"] = new["status"]
        metadata = dict(old_meta)
    elif subresource == "":
        result = {key: value for key, value in new.items() if key != "status"}
        if "status" in old:
            result["status"] = old["status"]
        metadata = _without_server_fields(new["metadata"])
        for field in _SERVER_FIELDS:
            if field in old_meta:
                metadata[field] = old_meta[field]
        if _spec_changed(result, old):
            metadata["generation"] = old_meta["generation"] + 1
        if "deletionTimestamp" in old_meta:
            added = set(metadata.get("finalizers", [])) - set(old_meta.get("finalizers", []))
            if added:
                raise InvalidObjectError(
                    f"metadata.finalizers: no new finalizers can be added while the object is being "
                    f"deleted (adding {sorted(added)})"
                )
    else:
        raise InvalidObjectError(f"unknown subresource {subresource!r}")
    metadata["resourceVersion"] = str(revision)
    result["metadata"] = metadata
    if "deletionTimestamp" in metadata and not _held(result):
        return Change("DELETED", result)
    return Change("MODIFIED", result)


def deleted(old: JsonObject, *, expected: int | None, revision: int, now: datetime) -> Change | None:
    """Delete ``old``, or only mark it (deletionTimestamp) while finalizers remain.

    A Namespace's ``spec.finalizers`` hold it too, and marking it turns its phase to Terminating.

    Returns None when there is nothing to write: the object is already marked and still has
    finalizers, so a repeated delete changes nothing (as in Kubernetes). Raises ConflictError when
    ``expected`` is stale.
    """
    check_version(old, expected)
    metadata = dict(old["metadata"])
    if _held(old):
        if "deletionTimestamp" in metadata:
            return None
        # Generation is deliberately not bumped here (Kubernetes does bump it for finalizer-only
        # deletions): in vmplane generation tracks spec changes only, which is what the rollout
        # planner compares against observedGeneration.
        metadata.update(deletionTimestamp=timestamp(now), deletionGracePeriodSeconds=0)
        metadata["resourceVersion"] = str(revision)
        marked = {**old, "metadata": metadata}
        if _is_namespace(old):
            # As the namespace registry's Delete: the phase turns in the same write.
            status = old.get("status")
            marked["status"] = {**(status if isinstance(status, dict) else {}), "phase": "Terminating"}
        return Change("MODIFIED", marked)
    metadata["resourceVersion"] = str(revision)
    return Change("DELETED", {**old, "metadata": metadata})


def _is_namespace(obj: JsonObject) -> bool:
    return obj.get("apiVersion") == "v1" and obj.get("kind") == "Namespace"


def _held(obj: JsonObject) -> bool:
    """Whether finalizers keep ``obj`` stored once deleted.

    ``metadata.finalizers`` for every object; for a Namespace also ``spec.finalizers``, which
    kube-apiserver's namespace registry holds the same way (``ShouldDeleteNamespaceDuringUpdate``).
    """
    if obj["metadata"].get("finalizers"):
        return True
    spec = obj.get("spec")
    return _is_namespace(obj) and isinstance(spec, dict) and bool(spec.get("finalizers"))


def _without_server_fields(metadata: JsonObject) -> JsonObject:
    return {key: value for key, value in metadata.items() if key not in _SERVER_FIELDS}


def _spec_changed(new: JsonObject, old: JsonObject) -> bool:
    new_spec, old_spec = _spec_of(new), _spec_of(old)
    if new_spec != old_spec:
        return True  # both are decoded JSON (no tuples, no NaN), so their texts differ too
    # Equal in Python is not enough: Python equates True with 1 and 1 with 1.0 while the stored
    # JSON (and any client diffing it) does not, so equal specs are compared as canonical text.
    return _canonical(new_spec) != _canonical(old_spec)


def _spec_of(obj: JsonObject) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in _NOT_SPEC}


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode_list(bodies: list[str]) -> list[JsonObject]:
    """Decode stored texts into fresh objects with one json.loads call (cheaper than one per text)."""
    # Decoding 10,000 VMs allocates millions of containers, and each allocation burst triggers the
    # cyclic garbage collector, which then scans them all again: that made a 10k list 4x slower.
    # Decoded JSON cannot contain reference cycles, so pausing the collector loses nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        items: list[JsonObject] = json.loads("[" + ",".join(bodies) + "]")
    finally:
        if was_enabled:
            gc.enable()
    return items
