"""Decoding wire dicts into typed objects, with every error reported as a field cause.

Unknown fields are never dropped silently: under ``Strict`` they are causes, under ``Warn`` they are
removed and returned as warnings (Kubernetes' ``unknown field "spec.foo"`` text), under ``Ignore``
they are removed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from vmplane.api.errors import CauseType, FieldCause, InvalidObjectError
from vmplane.api.model import WireModel

__all__ = ["Decoded", "FieldValidation", "decode", "field_path"]

M = TypeVar("M", bound=WireModel)


class FieldValidation(str, Enum):
    """The ``fieldValidation`` query parameter."""

    STRICT = "Strict"
    WARN = "Warn"
    IGNORE = "Ignore"


@dataclass(frozen=True, slots=True)
class Decoded(Generic[M]):
    """A decoded object and the warnings decoding produced."""

    value: M
    warnings: list[str]


def field_path(loc: Sequence[int | str]) -> str:
    """Kubernetes field path for a pydantic location: ``spec.template.spec.volumes[0].name``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _wire_loc(error: ErrorDetails) -> tuple[int | str, ...]:
    # Pydantic inserts validator and union-branch labels such as ``function-after[...]`` into loc;
    # a wire path only has object keys and list indices.
    return tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in p)


def _cause(error: ErrorDetails, prefix: str) -> FieldCause:
    loc = _wire_loc(error)
    path = field_path(loc)
    full = f"{prefix}.{path}" if prefix and path else prefix or path
    kind = error["type"]
    if kind == "extra_forbidden":
        return FieldCause(full, f'unknown field "{full}"', CauseType.UNKNOWN_FIELD)
    if kind == "missing":
        return FieldCause(full, "Required value", CauseType.FIELD_VALUE_REQUIRED)
    if kind in ("literal_error", "enum"):
        return FieldCause(
            full,
            f"Unsupported value: {error['input']!r}: {error['msg']}",
            CauseType.FIELD_VALUE_NOT_SUPPORTED,
        )
    message = error["msg"].removeprefix("Value error, ")
    return FieldCause(full, f"Invalid value: {error['input']!r}: {message}", CauseType.FIELD_VALUE_INVALID)


def _remove(data: Any, loc: tuple[int | str, ...]) -> None:
    target = data
    for part in loc[:-1]:
        target = target[part]
    del target[loc[-1]]


def decode(
    model: type[M],
    data: Any,
    *,
    kind: str,
    field_validation: FieldValidation = FieldValidation.STRICT,
    prefix: str = "",
) -> Decoded[M]:
    """Validate ``data`` as ``model``; raise InvalidObjectError listing every invalid field.

    ``prefix`` is prepended to field paths when ``data`` is part of a larger object.
    """
    name = data.get("metadata", {}).get("name", "") if isinstance(data, dict) else ""
    if not isinstance(data, dict):
        raise InvalidObjectError(kind, name, [FieldCause(prefix or "<root>", "must be a JSON object")])
    try:
        return Decoded(model.model_validate(data), [])
    except ValidationError as err:
        errors = err.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if field_validation is FieldValidation.STRICT or len(unknown) < len(errors):
        raise InvalidObjectError(kind, str(name or ""), [_cause(e, prefix) for e in errors]) from None
    pruned = copy.deepcopy(data)
    for error in sorted(unknown, key=lambda e: len(e["loc"]), reverse=True):
        _remove(pruned, _wire_loc(error))
    warnings = (
        [_cause(e, prefix).message for e in unknown] if field_validation is FieldValidation.WARN else []
    )
    return Decoded(model.model_validate(pruned), warnings)
