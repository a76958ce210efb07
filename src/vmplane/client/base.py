"""The ObjectClient protocol: what a controller or agent may ask of the API server.

Its methods and argument shapes follow :class:`vmplane.store.base.Store` (same resource keys,
``plural.group``; same ``ListResult``/``WatchEvent``; same error tree), so code written against a
Store switches by changing a type. What it adds is what the REST API has and a store has not: label
and field selectors, ``patch``, and errors for refusals (``ForbiddenError``, ``InvalidError``) that a
store never raises because it admits nothing.

A watch ends when the server ends it (its watch timeout); the caller watches again from the last
resourceVersion it saw, as client-go's reflector does. ``ExpiredError`` (410) means: list again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from vmplane.store.base import JsonObject, ListResult, StoreError, WatchEvent

__all__ = [
    "ApiStatusError",
    "ForbiddenError",
    "InvalidError",
    "ObjectClient",
    "Patch",
    "PatchType",
    "UnavailableError",
]

PatchType = Literal["merge", "json"]
#: A merge patch is an object; a JSON patch a list of operations.
Patch = JsonObject | list[JsonObject]


class ApiStatusError(StoreError):
    """The API answered with a Kubernetes ``Status`` that no Store error stands for."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ForbiddenError(ApiStatusError):
    """401/403: this client's identity may not do that."""


class InvalidError(ApiStatusError):
    """422 (or 400): admission refused the object."""


class UnavailableError(ApiStatusError):
    """The API server could not be reached, or answered 5xx/429: worth retrying."""


class ObjectClient(Protocol):
    """Get, list, watch and write objects through the API (admission and authorization included)."""

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        ...

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        """Matching objects (in one namespace, or all when None) and the list's resourceVersion."""
        ...

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        since: int,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        """Changes after ``since`` until the server ends the stream; ExpiredError if ``since`` is too old."""
        ...

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Create ``obj``; AlreadyExistsError if its name is taken."""
        ...

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status", "finalize"] = ""
    ) -> JsonObject:
        """Replace ``obj`` (ConflictError when its resourceVersion is stale)."""
        ...

    async def update_status(self, resource: str, obj: JsonObject) -> JsonObject:
        """``update(..., subresource="status")``."""
        ...

    async def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Patch,
        *,
        patch_type: PatchType = "merge",
        subresource: Literal["", "status"] = "",
    ) -> JsonObject:
        """Apply a JSON merge patch (RFC 7386) or a JSON patch (RFC 6902) on the server."""
        ...

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete (or, with finalizers, mark for deletion); returns the object as last seen."""
        ...

    async def close(self) -> None:
        """Release connections and end every open watch."""
        ...
