"""Defaults of the ``KubeVirt`` object, with the structure upstream's installed CR has.

Upstream's ``kubevirt-cr.yaml`` and its operator leave a KubeVirt object with empty
``certificateRotateStrategy``, ``customizeComponents`` and ``workloadUpdateStrategy`` objects, a
``developerConfiguration`` object, ``imagePullPolicy: IfNotPresent`` and ``uninstallStrategy:
BlockUninstallIfWorkloadsExist``. Clients rely on that structure: the user guide's JSON patch
``add /spec/workloadUpdateStrategy/workloadUpdateMethods`` needs its parent to exist. Defaulting fills
only what is absent, so it is idempotent and never overrides what a user set.
"""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]

__all__ = ["KUBEVIRT_SPEC_DEFAULTS", "default_kubevirt"]

#: Top-level ``spec`` fields and their defaults (objects are copied, never shared).
KUBEVIRT_SPEC_DEFAULTS: dict[str, Any] = {
    "certificateRotateStrategy": {},
    "configuration": {"developerConfiguration": {}},
    "customizeComponents": {},
    "imagePullPolicy": "IfNotPresent",
    "workloadUpdateStrategy": {},
    "uninstallStrategy": "BlockUninstallIfWorkloadsExist",
}


def _fill(target: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if target.get(key) is None:
            target[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            _fill(target[key], value)


def default_kubevirt(obj: JsonObject) -> JsonObject:
    """``obj`` (a KubeVirt as JSON, not modified) with every absent default filled in.

    A ``spec`` that is not an object is left as it is, for validation to name.
    """
    result = copy.deepcopy(obj)
    spec = result.setdefault("spec", {})
    if spec is None:
        spec = result["spec"] = {}
    if isinstance(spec, dict):
        _fill(spec, KUBEVIRT_SPEC_DEFAULTS)
    return result
