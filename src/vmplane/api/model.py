"""The base of every wire type: frozen, camelCase on the wire, unknown fields refused.

Every optional field defaults to ``None`` and objects are dumped with ``exclude_none``, so a manifest
read and written back comes out as it went in: nothing is added, nothing is dropped.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["WireModel"]


class WireModel(BaseModel):
    """A Kubernetes wire object: immutable, camelCase aliases, ``extra="forbid"`` for path-precise errors."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict, exactly as it would be sent: camelCase, unset fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Validate a JSON-ready dict (raises pydantic.ValidationError; see ``decoding`` for causes)."""
        return cls.model_validate(data)
