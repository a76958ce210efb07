"""The columns of ``kubectl get nodes``, as kube-apiserver's printer fills them (``printNode``).

STATUS is ``Ready`` or ``NotReady`` from the Ready condition (``Unknown`` without one), with
``SchedulingDisabled`` appended for a cordoned node; ROLES the ``node-role.kubernetes.io/<role>`` (and
legacy ``kubernetes.io/role``) labels, or ``<none>``; VERSION ``nodeInfo.kubeletVersion``. The
``-o wide`` columns follow too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vmplane.apiserver.registry import TableColumn
from vmplane.apiserver.tables import AGE_COLUMN, NAME_COLUMN
from vmplane.store.base import JsonObject

__all__ = ["NODE_COLUMNS", "node_roles", "node_status"]

_ROLE_PREFIX = "node-role.kubernetes.io/"
_LEGACY_ROLE = "kubernetes.io/role"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list; nothing for anything else (a Node is written by any admin, as is)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def node_status(node: JsonObject) -> str:
    """``Ready``, ``NotReady``, ``Unknown``, each maybe followed by ``,SchedulingDisabled``."""
    conditions = _dicts(_dict(node.get("status")).get("conditions"))
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    parts = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if _dict(node.get("spec")).get("unschedulable") is True:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: JsonObject) -> str:
    """The node's roles, sorted and comma-separated, or ``<none>``."""
    roles: set[str] = set()
    for key, value in _dict(_dict(node.get("metadata")).get("labels")).items():
        if key.startswith(_ROLE_PREFIX) and key != _ROLE_PREFIX:
            roles.add(key.removeprefix(_ROLE_PREFIX))
        elif key == _LEGACY_ROLE and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or "<none>"


def _node_info(field: str) -> Any:
    def cell(node: JsonObject, _now: datetime) -> str:
        return str(_dict(_dict(node.get("status")).get("nodeInfo")).get(field, ""))

    return cell


def _address(kind: str) -> Any:
    def cell(node: JsonObject, _now: datetime) -> str:
        for address in _dicts(_dict(node.get("status")).get("addresses")):
            if address.get("type") == kind:
                return str(address.get("address", ""))
        return "<none>"

    return cell


NODE_COLUMNS = (
    NAME_COLUMN,
    TableColumn(name="Status", cell=lambda n, _now: node_status(n), description="The status of the node"),
    TableColumn(name="Roles", cell=lambda n, _now: node_roles(n), description="The roles of the node"),
    AGE_COLUMN,
    TableColumn(
        name="Version", cell=_node_info("kubeletVersion"), description="Kubelet Version reported by the node."
    ),
    TableColumn(
        name="Internal-IP",
        cell=_address("InternalIP"),
        priority=1,
        description="List of addresses reachable to the node.",
    ),
    TableColumn(
        name="External-IP",
        cell=_address("ExternalIP"),
        priority=1,
        description="List of addresses reachable to the node.",
    ),
    TableColumn(
        name="OS-Image",
        cell=_node_info("osImage"),
        priority=1,
        description="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    TableColumn(
        name="Kernel-Version",
        cell=_node_info("kernelVersion"),
        priority=1,
        description="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    TableColumn(
        name="Container-Runtime",
        cell=_node_info("containerRuntimeVersion"),
        priority=1,
        description="ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
)
