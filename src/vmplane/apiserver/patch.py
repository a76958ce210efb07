"""The patch formats Kubernetes accepts, as pure functions of (current object, patch body).

* ``application/merge-patch+json``: RFC 7386, written here (a dozen lines).
* ``application/json-patch+json``: RFC 6902 through the ``jsonpatch`` library (``test`` included).
* ``application/strategic-merge-patch+json``: only for the core kinds, whose lists vmplane treats as
  atomic; it is a merge patch once the ``$``-directives are handled. Custom kinds answer 415.
* ``application/apply-patch+yaml``: decoded here; the apply itself is
  :mod:`vmplane.apiserver.field_ownership`.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import jsonpointer

from vmplane.apiserver import decoders
from vmplane.apiserver import status as st
from vmplane.store.base import JsonObject

__all__ = [
    "APPLY",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "decode_apply",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` removes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _decode_json(body: bytes, duplicates: list[str] | None = None) -> Any:
    try:
        return decoders.load_json(body, what="patch", duplicates=duplicates)
    except decoders.BodyError as err:
        raise st.bad_request(f"error decoding patch: {err}") from err


def decode_merge_patch(body: bytes, duplicates: list[str] | None = None) -> JsonObject:
    patch = _decode_json(body, duplicates)
    if not isinstance(patch, dict):
        raise st.bad_request("error decoding patch: a merge patch must be a JSON object")
    return patch


def json_patch(target: JsonObject, body: bytes) -> JsonObject:
    """RFC 6902; a malformed patch is 400, an operation that fails (``test`` included) is 422."""
    operations = _decode_json(body)
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise st.bad_request("error decoding patch: a JSON patch must be an array of operations")
    try:
        patch = jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException) as err:
        raise st.bad_request(f"error decoding patch: {err}") from err
    try:
        result = patch.apply(target)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as err:
        raise st.ApiError(code=422, reason="Invalid", message=str(err)) from err
    if not isinstance(result, dict):
        raise st.ApiError(
            code=422, reason="Invalid", message="the patch replaced the object with a non-object"
        )
    return result


def _strip_directives(patch: Any, target: Any) -> Any:
    """Turn a strategic merge patch into a merge patch (lists are atomic for vmplane's core kinds)."""
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "delete":
        return None
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"} | {
            k: None for k in (target or {}) if k not in patch
        }
    retain = patch.get("$retainKeys")
    result: JsonObject = {}
    for key, value in patch.items():
        if (
            key.startswith("$setElementOrder/")
            or key.startswith("$deleteFromPrimitiveList/")
            or key
            in (
                "$retainKeys",
                "$patch",
            )
        ):
            continue
        sub_target = target.get(key) if isinstance(target, dict) else None
        result[key] = _strip_directives(value, sub_target)
    if isinstance(retain, list) and isinstance(target, dict):
        for key in target:
            if key not in retain:
                result[key] = None
    return result


def strategic_merge_patch(target: JsonObject, body: bytes, duplicates: list[str] | None = None) -> JsonObject:
    patch = decode_merge_patch(body, duplicates)
    merged = merge_patch(target, _strip_directives(patch, target))
    assert isinstance(merged, dict)
    return merged


def decode_apply(body: bytes, duplicates: list[str] | None = None) -> JsonObject:
    try:
        applied = decoders.load_yaml(body, duplicates=duplicates)
    except decoders.BodyError as err:
        raise st.bad_request(f"error decoding YAML: {err}") from err
    if not isinstance(applied, dict):
        raise st.bad_request("error decoding YAML: the applied configuration must be an object")
    return applied
