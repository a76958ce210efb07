"""From a request path to what it addresses: kind, namespace, name, subresource (pure).

Paths follow kube-apiserver: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...``
otherwise, then ``[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmplane.apiserver import status as st
from vmplane.apiserver.registry import Registry, ResourceType

__all__ = ["Target", "parse_target"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a resource request addresses.

    ``namespace`` is None for a namespaced kind listed across all namespaces and ``""`` for a
    cluster-scoped kind; ``name`` is None for a collection.
    """

    resource_type: ResourceType
    namespace: str | None
    name: str | None = None
    subresource: str = ""

    @property
    def store_namespace(self) -> str:
        return self.namespace or ""


def parse_target(registry: Registry, group: str, version: str, tail: str) -> Target:
    """Resolve the path below ``/api/v1`` or ``/apis/<group>/<version>``; unknown paths are 404."""
    segments = [s for s in tail.split("/") if s]
    if not segments:
        raise st.path_not_found()
    if segments[0] == "namespaces" and len(segments) >= 3:
        namespaced = registry.lookup(group, version, segments[2])
        if namespaced is not None and namespaced.namespaced:
            return _item(namespaced, segments[1], segments[3:])
    resource_type = registry.lookup(group, version, segments[0])
    if resource_type is None:
        raise st.path_not_found()
    if resource_type.namespaced:
        if len(segments) > 1:
            raise st.path_not_found()
        return Target(resource_type, None)
    return _item(resource_type, "", segments[1:])


def _item(resource_type: ResourceType, namespace: str, rest: list[str]) -> Target:
    if not rest:
        return Target(resource_type, namespace)
    if len(rest) == 1:
        return Target(resource_type, namespace, rest[0])
    if len(rest) == 2 and rest[1] == "status" and resource_type.has_status_subresource:
        return Target(resource_type, namespace, rest[0], "status")
    if len(rest) == 2 and rest[1] == "finalize" and resource_type.store_resource == "namespaces":
        return Target(resource_type, namespace, rest[0], "finalize")
    raise st.path_not_found()
