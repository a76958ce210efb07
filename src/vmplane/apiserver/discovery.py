"""Discovery documents built from the registry: legacy lists and aggregated discovery (v2, v2beta1).

kubectl asks ``/api`` and ``/apis`` with an ``Accept`` list preferring aggregated discovery; a
response must carry the exact ``Content-Type`` of the variant chosen, or kubectl falls back to the
legacy ``APIGroupList`` and fetches every group/version's ``APIResourceList``.
"""

from __future__ import annotations

import platform

from vmplane.apiserver.registry import Registry, ResourceType
from vmplane.store.base import JsonObject

__all__ = [
    "AGGREGATED_V2",
    "AGGREGATED_V2BETA1",
    "REVIEW_GROUPS",
    "aggregated",
    "all_groups",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "choose_discovery",
    "version_info",
]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

#: Groups served by dedicated handlers, not the registry (``apiserver.reviews``): group -> version ->
#: (plural, kind); each resource is cluster-scoped and create-only, as in Kubernetes.
REVIEW_GROUPS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "authentication.k8s.io": {"v1": (("selfsubjectreviews", "SelfSubjectReview"),)},
    "authorization.k8s.io": {"v1": (("selfsubjectaccessreviews", "SelfSubjectAccessReview"),)},
}


def _media_params(media_range: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in media_range.split(";")]
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip()
    return parts[0].lower(), params


def accept_entries(accept: str | None) -> list[tuple[str, dict[str, str]]]:
    """The media ranges of an ``Accept`` header in the client's order."""
    return [_media_params(entry) for entry in (accept or "").split(",") if entry.strip()]


def choose_discovery(accept: str | None) -> str | None:
    """The aggregated discovery version the client asked for first, or None for the legacy lists."""
    for media_type, params in accept_entries(accept):
        if media_type in ("application/json", "*/*") and params.get("as") == "APIGroupDiscoveryList":
            if params.get("g") == "apidiscovery.k8s.io" and params.get("v") in ("v2", "v2beta1"):
                return params["v"]
        elif media_type in ("application/json", "*/*", "application/*") and "as" not in params:
            return None
    return None


def version_info() -> JsonObject:
    """``/version``: minor 32 makes the kubectl dispatcher run kubectl 1.32 (aggregated discovery v2)."""
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-vmplane",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": f"linux/{'arm64' if platform.machine() == 'aarch64' else 'amd64'}",
    }


def api_versions() -> JsonObject:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def all_groups(registry: Registry) -> list[str]:
    """The registry's groups, then the review groups."""
    return [*registry.groups(), *(g for g in REVIEW_GROUPS if g not in registry.groups())]


def _versions(registry: Registry, group: str) -> list[str]:
    return list(REVIEW_GROUPS[group]) if group in REVIEW_GROUPS else list(registry.versions(group))


def _group_entry(registry: Registry, group: str) -> JsonObject:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in _versions(registry, group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list(registry: Registry) -> JsonObject:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(registry, g) for g in all_groups(registry)],
    }


def api_group(registry: Registry, group: str) -> JsonObject:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(registry, group)}


def _resource_entry(resource_type: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "name": resource_type.plural,
        "singularName": resource_type.singular,
        "namespaced": resource_type.namespaced,
        "kind": resource_type.kind,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        entry["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        entry["categories"] = list(resource_type.categories)
    return entry


def _review_resources(group: str, version: str) -> list[tuple[str, str]]:
    return list(REVIEW_GROUPS.get(group, {}).get(version, ()))


def api_resource_list(registry: Registry, group: str, version: str) -> JsonObject:
    resources: list[JsonObject] = [
        {"name": plural, "singularName": plural[:-1], "namespaced": False, "kind": kind, "verbs": ["create"]}
        for plural, kind in _review_resources(group, version)
    ]
    for resource_type in registry.in_group_version(group, version):
        resources.append(_resource_entry(resource_type))
        if resource_type.has_status_subresource:
            resources.append(
                {
                    "name": f"{resource_type.plural}/status",
                    "singularName": "",
                    "namespaced": resource_type.namespaced,
                    "kind": resource_type.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _aggregated_resource(resource_type: ResourceType) -> JsonObject:
    response_kind = {
        "group": resource_type.group,
        "version": resource_type.version,
        "kind": resource_type.kind,
    }
    entry: JsonObject = {
        "resource": resource_type.plural,
        "responseKind": response_kind,
        "scope": "Namespaced" if resource_type.namespaced else "Cluster",
        "singularResource": resource_type.singular,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        entry["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        entry["categories"] = list(resource_type.categories)
    if resource_type.has_status_subresource:
        entry["subresources"] = [
            {"subresource": "status", "responseKind": response_kind, "verbs": ["get", "patch", "update"]}
        ]
    return entry


def _aggregated_review(group: str, version: str, plural: str, kind: str) -> JsonObject:
    return {
        "resource": plural,
        "responseKind": {"group": group, "version": version, "kind": kind},
        "scope": "Cluster",
        "singularResource": plural[:-1],
        "verbs": ["create"],
    }


def aggregated(registry: Registry, *, core: bool, version: str) -> JsonObject:
    """``APIGroupDiscoveryList`` for ``/api`` (core) or ``/apis`` (every other group)."""
    groups = [""] if core else all_groups(registry)
    items: list[JsonObject] = []
    for group in groups:
        versions = [
            {
                "version": v,
                "resources": [
                    *(
                        _aggregated_review(group, v, plural, kind)
                        for plural, kind in _review_resources(group, v)
                    ),
                    *(_aggregated_resource(r) for r in registry.in_group_version(group, v)),
                ],
                "freshness": "Current",
            }
            for v in _versions(registry, group)
        ]
        metadata: JsonObject = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({"metadata": metadata, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
