"""The Store protocol: Kubernetes object-store semantics that every backend implements.

Objects are plain JSON dicts (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``) so that the
store knows nothing of the API types; typing happens above it, at admission. A backend owns the
server-set metadata: ``uid``, ``resourceVersion`` (one counter across all objects, like an etcd
revision), ``generation`` (bumped when anything but ``metadata``/``status`` changes), and
``creationTimestamp``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "ExpiredError",
    "InvalidObjectError",
    "JsonObject",
    "ListResult",
    "NotFoundError",
    "Store",
    "StoreError",
    "WatchEvent",
    "WatchEventType",
]

JsonObject = dict[str, Any]
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreError(Exception):
    """Base of every error a Store raises."""


class NotFoundError(StoreError):
    """The object does not exist."""


class AlreadyExistsError(StoreError):
    """An object with that resource, namespace and name already exists."""


class ConflictError(StoreError):
    """The write carried a resourceVersion that is no longer the object's current one."""


class ExpiredError(StoreError):
    """A watch asked for a resourceVersion older than the retained history (HTTP 410 Gone)."""


class InvalidObjectError(StoreError):
    """The object lacks what the store needs (metadata.name, a JSON-serialisable body)."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change, as a watch stream delivers it; ``object`` carries its new resourceVersion.

    A ``BOOKMARK`` (only on a watch opened with ``progress=True``) is no change: its object is empty
    and its ``resource_version`` is a revision up to which the stream has delivered every change.
    """

    type: WatchEventType | Literal["BOOKMARK"]
    object: JsonObject
    resource_version: int


@dataclass(frozen=True, slots=True)
class ListResult:
    """A consistent snapshot: the items as of ``resource_version``."""

    items: list[JsonObject]
    resource_version: int


class Store(Protocol):
    """Kubernetes-style object storage keyed by (resource, namespace, name).

    ``resource`` is the plural resource with its group, e.g. ``virtualmachines.kubevirt.io`` or
    ``events`` for the core group. Cluster-scoped objects use the namespace ``""``.
    """

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        """Return the object or raise NotFoundError."""
        ...

    async def list(self, resource: str, namespace: str | None = None) -> ListResult:
        """All objects of a resource (in one namespace, or all when None), ordered by namespace/name."""
        ...

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object, setting uid, resourceVersion, generation 1 and creationTimestamp."""
        ...

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status"] = ""
    ) -> JsonObject:
        """Replace an object.

        If ``obj.metadata.resourceVersion`` is set and stale, raise ConflictError. A main-resource
        update keeps the stored status; a ``status`` update changes only the status. ``generation``
        is bumped when the spec (anything outside metadata and status) changes. An object that has a
        deletionTimestamp and loses its last finalizer is deleted by the update.
        """
        ...

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        """Delete an object, or, while it has finalizers, set its deletionTimestamp and keep it.

        Returns the object as last seen (with the deletion's resourceVersion).
        """
        ...

    def watch(
        self, resource: str, namespace: str | None = None, *, since: int, progress: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Every change after ``since``, exactly once, in order, then live changes until closed.

        Raises ExpiredError (on first iteration) when ``since`` is older than the retained history.
        With ``progress``, the stream also reports how far it has got, as etcd's progress notify
        does: a BOOKMARK once it has caught up with the store, and one after each
        ``request_progress``, each carrying a revision at least as new as every write committed
        before it was asked for. A cache uses them to know it has seen every change up to a revision
        even when the latest writes were to other resources.
        """
        ...

    async def request_progress(self) -> None:
        """Ask every watch opened with ``progress`` to send a BOOKMARK once it has caught up."""
        ...

    async def current_revision(self) -> int:
        """The resourceVersion of the latest write."""
        ...

    async def close(self) -> None:
        """Release connections and end every open watch."""
        ...
