"""Admission errors: every invalid field becomes one cause, and all causes are reported together.

They become Kubernetes ``Status`` objects (422 ``Invalid`` with ``details.causes``) only at the HTTP
edge; the API layer itself knows nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["CauseType", "FieldCause", "InvalidObjectError"]


class CauseType(str, Enum):
    """Kubernetes ``metav1.CauseType`` values used by admission."""

    FIELD_VALUE_INVALID = "FieldValueInvalid"
    FIELD_VALUE_REQUIRED = "FieldValueRequired"
    FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
    FIELD_VALUE_DUPLICATE = "FieldValueDuplicate"
    FIELD_VALUE_FORBIDDEN = "FieldValueForbidden"
    FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
    UNKNOWN_FIELD = "FieldValueUnknown"


@dataclass(frozen=True, slots=True)
class FieldCause:
    """One invalid field: its path (``spec.template.spec.domain.cpu.sockets``), why, and the cause type."""

    field: str
    message: str
    reason: CauseType = CauseType.FIELD_VALUE_INVALID


class InvalidObjectError(ValueError):
    """An object failed decoding or admission; ``causes`` lists every invalid field, not just the first."""

    def __init__(self, kind: str, name: str, causes: list[FieldCause]) -> None:
        self.kind = kind
        self.name = name
        self.causes = list(causes)
        summary = "; ".join(f"{c.field}: {c.message}" for c in causes)
        super().__init__(f'{kind} "{name}" is invalid: {summary}')
