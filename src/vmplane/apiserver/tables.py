"""``meta.k8s.io/v1`` Table responses: the server formats every cell, as kube-apiserver does.

``human_duration`` follows apimachinery's ``duration.HumanDuration`` so AGE reads exactly as kubectl
prints it for built-in kinds (``45s``, ``5m3s``, ``2d``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from vmplane.api import timestamps
from vmplane.apiserver.registry import ResourceType, TableColumn
from vmplane.store.base import JsonObject

__all__ = [
    "AGE_COLUMN",
    "NAME_COLUMN",
    "age",
    "build_table",
    "condition_status",
    "human_duration",
    "parse_timestamp",
    "partial_object_metadata",
]


def human_duration(seconds: float) -> str:
    """Kubernetes' short human duration (``duration.HumanDuration``)."""
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp (``2024-01-02T03:04:05Z``) or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return timestamps.parse_timestamp(value)
    except ValueError:
        return None


def age(obj: JsonObject, now: datetime) -> str:
    """The AGE cell: time since ``metadata.creationTimestamp``."""
    created = parse_timestamp(obj.get("metadata", {}).get("creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def condition_status(obj: JsonObject, condition_type: str) -> str:
    """The ``status`` of a status condition, or ``""`` when the object does not carry it."""
    for condition in obj.get("status", {}).get("conditions", None) or []:
        if isinstance(condition, dict) and condition.get("type") == condition_type:
            return str(condition.get("status", ""))
    return ""


NAME_COLUMN = TableColumn(
    name="Name",
    cell=lambda obj, _now: obj.get("metadata", {}).get("name", ""),
    format="name",
    description="Name must be unique within a namespace.",
)
AGE_COLUMN = TableColumn(
    name="Age",
    cell=age,
    type="date",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def partial_object_metadata(obj: JsonObject) -> JsonObject:
    """The row object kubectl asks for by default (``includeObject=Metadata``)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _columns(resource_type: ResourceType) -> tuple[TableColumn, ...]:
    return resource_type.columns or (NAME_COLUMN, AGE_COLUMN)


def _row_object(obj: JsonObject, include_object: str) -> JsonObject | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return partial_object_metadata(obj)


def build_table(
    resource_type: ResourceType,
    items: Sequence[JsonObject],
    *,
    now: datetime,
    include_object: str = "Metadata",
    list_metadata: JsonObject | None = None,
) -> JsonObject:
    """A ``Table`` of ``items`` with the kind's columns; cells are formatted here, not by kubectl."""
    columns = _columns(resource_type)
    rows: list[JsonObject] = []
    for obj in items:
        cells: list[Any] = [column.cell(obj, now) for column in columns]
        row: JsonObject = {"cells": cells}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata or {},
        "columnDefinitions": [
            {
                "name": c.name,
                "type": c.type,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            }
            for c in columns
        ],
        "rows": rows,
    }
