"""Kubernetes meta types (``ObjectMeta``, conditions, ``Status``) shared by every kind."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vmplane.api.model import WireModel

__all__ = [
    "Condition",
    "ListMeta",
    "ObjectMeta",
    "OwnerReference",
    "Status",
    "StatusCause",
    "StatusDetails",
]


class OwnerReference(WireModel):
    """A pointer from a dependent object to its owner."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(WireModel):
    """Server-side apply bookkeeping; kept opaque."""

    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: str | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = Field(default=None, alias="fieldsV1")
    subresource: str | None = None


class ObjectMeta(WireModel):
    """``metadata`` of every object; the store owns uid, resourceVersion, generation and timestamps."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[OwnerReference] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None


class ListMeta(WireModel):
    """``metadata`` of a list."""

    resource_version: str | None = None
    continue_: str | None = Field(default=None, alias="continue")
    remaining_item_count: int | None = None


class Condition(WireModel):
    """A status condition (``type``, ``status`` True/False/Unknown, ``reason``, ``message``, times)."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_probe_time: str | None = None
    observed_generation: int | None = None


class StatusCause(WireModel):
    """One reason an operation failed, usually one invalid field."""

    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(WireModel):
    """Which object an error is about, and every cause."""

    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retry_after_seconds: int | None = None


class Status(WireModel):
    """The Kubernetes ``Status`` object returned for errors and some deletions."""

    api_version: str = "v1"
    kind: str = "Status"
    metadata: ListMeta | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: int | None = None
