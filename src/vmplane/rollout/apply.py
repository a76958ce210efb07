"""Apply live changes to a typed running spec, re-validating only the parts they touch.

Re-validating a whole VMI spec after a one-field change would cost more than the rest of planning;
replacing just the touched sub-objects keeps a plan cheaper than a few JSON round trips (bench/planner.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.paths import split

__all__ = ["replace_paths"]

# How deep a live path is cut before re-validation: ``domain.cpu.sockets`` → ``domain.cpu``.
_DEPTH = 2


@functools.cache
def _field(model: type[BaseModel], alias: str) -> tuple[str, TypeAdapter[Any]]:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return name, TypeAdapter(info.annotation)
    raise KeyError(f"{model.__name__} has no field {alias!r}")


def _replace(model: BaseModel, keys: list[str], wire: Mapping[str, Any]) -> BaseModel:
    name, adapter = _field(type(model), keys[0])
    value = wire.get(keys[0])
    if len(keys) == 1 or value is None:
        return model.model_copy(update={name: adapter.validate_python(value)})
    child = getattr(model, name)
    if not isinstance(child, BaseModel):
        return model.model_copy(update={name: adapter.validate_python(value)})
    return model.model_copy(update={name: _replace(child, keys[1:], value)})


def replace_paths(
    spec: VirtualMachineInstanceSpec, paths: Iterable[str], wire: Mapping[str, Any]
) -> VirtualMachineInstanceSpec:
    """``spec`` with the sub-objects holding ``paths`` replaced by their values in ``wire``."""
    prefixes: list[list[str]] = []
    for path in paths:
        keys: list[str] = []
        for key, name in split(path)[:_DEPTH]:
            keys.append(key)
            if name is not None:
                break
        if keys not in prefixes:
            prefixes.append(keys)
    result: BaseModel = spec
    for keys in prefixes:
        result = _replace(result, keys, wire)
    assert isinstance(result, VirtualMachineInstanceSpec)
    return result
