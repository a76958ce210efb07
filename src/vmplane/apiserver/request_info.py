"""From an HTTP request to authorizer ``Attributes`` (pure): Kubernetes' ``RequestInfoFactory``.

The path alone decides, without the registry, so a request is authorized before anything looks it
up: ``/api/v1/...`` and ``/apis/<group>/<version>/...`` are resource requests, then
``[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]``; anything else is a non-resource request
whose verb is the lower-cased method.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from vmplane.apiserver.authz import Attributes

__all__ = ["node_name_written", "request_attributes"]

_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
#: ``namespaces/<name>/<x>`` where ``x`` is a subresource of the Namespace, not a namespaced kind.
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


def _is_true(value: str | None) -> bool:
    return value in ("1", "t", "T", "true", "TRUE", "True")


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The attributes of ``method path?query``."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(verb=method.lower(), path=path)
    if not rest:
        return Attributes(verb=method.lower(), path=path)
    verb = _VERBS.get(method.upper(), method.lower())
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if verb == "get" and _is_true(query.get("watch")):
        verb = "watch"
    elif not name and verb == "get":
        verb = "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )


def _status_node(status: Any) -> str | None:
    if status is None:
        return ""  # the status (and its binding) removed
    if isinstance(status, dict) and "nodeName" in status:
        value = status["nodeName"]
        return value if isinstance(value, str) else ""
    return None


def node_name_written(body: bytes, content_type: str) -> str | None:
    """The ``status.nodeName`` a write body sets (``""`` when it clears it), or None if it leaves it.

    Reads a PUT body, a merge, strategic or apply patch (the object's shape) and a JSON patch (its
    operations on ``/status`` or ``/status/nodeName``). A body that does not parse sets nothing here;
    the handler refuses it.
    """
    try:
        parsed: Any = yaml.safe_load(body) if "yaml" in content_type else json.loads(body)
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    if isinstance(parsed, dict):
        return _status_node(parsed["status"]) if "status" in parsed else None
    written: str | None = None
    for op in parsed if isinstance(parsed, list) else ():
        if not isinstance(op, dict) or op.get("op") == "test":
            continue
        path, value = op.get("path"), op.get("value")
        if path == "/status/nodeName":
            written = value if op.get("op") != "remove" and isinstance(value, str) else ""
        elif path == "/status":
            written = "" if op.get("op") == "remove" else _status_node(value)
        elif op.get("op") in ("move", "copy") and str(path).startswith("/status"):
            written = ""  # a value from elsewhere: treat as leaving the node
    return written
