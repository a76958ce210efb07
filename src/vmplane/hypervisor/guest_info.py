"""What a guest agent said, in upstream's shapes. Pure.

The answers of ``guest-get-osinfo``, ``guest-get-host-name``, ``guest-get-timezone``,
``guest-get-users``, ``guest-get-fsinfo`` and ``guest-network-get-interfaces`` (qemu
``qga/qapi-schema.json``) become KubeVirt's ``VirtualMachineInstanceGuestAgentInfo``,
``VirtualMachineInstanceGuestOSUserList`` and ``VirtualMachineInstanceFileSystemList`` (the JSON
upstream's ``guestosinfo``, ``userlist`` and ``filesystemlist`` answer) and the guest's interfaces.

The guest writes these answers, so nothing is trusted: a field of the wrong type is left out, strings
are cut to ``MAX_TEXT`` characters and lists to ``MAX_ITEMS`` entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_ITEMS",
    "MAX_TEXT",
    "GuestInterface",
    "filesystem_list",
    "guest_os_info",
    "interfaces",
    "user_list",
]

MAX_TEXT = 256
MAX_ITEMS = 64

_OS_FIELDS = {
    "name": "name",
    "kernel-release": "kernelRelease",
    "version": "version",
    "pretty-name": "prettyName",
    "version-id": "versionId",
    "kernel-version": "kernelVersion",
    "machine": "machine",
    "id": "id",
}


@dataclass(frozen=True, slots=True)
class GuestInterface:
    """One interface the guest agent reports: its name, MAC and addresses (no prefixes, as upstream)."""

    name: str
    mac: str
    ip_addresses: tuple[str, ...]


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value[:MAX_ITEMS] if isinstance(v, Mapping)] if isinstance(value, list) else []


def _shown(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


def user_list(users: Any) -> dict[str, Any]:
    """``guest-get-users`` as ``VirtualMachineInstanceGuestOSUserList``."""
    items = [
        _shown(
            {
                "userName": _text(u.get("user")),
                "domain": _text(u.get("domain")),
                "loginTime": _number(u.get("login-time")),
            }
        )
        for u in _items(users)
    ]
    return {"metadata": {}, "items": [i for i in items if "userName" in i]}


def _filesystem(fs: Mapping[str, Any]) -> dict[str, Any]:
    disks = [
        _shown({"busType": _text(d.get("bus-type")), "serial": _text(d.get("serial"))})
        for d in _items(fs.get("disk"))
    ]
    return _shown(
        {
            "diskName": _text(fs.get("name")),
            "mountPoint": _text(fs.get("mountpoint")),
            "fileSystemType": _text(fs.get("type")),
            "usedBytes": _number(fs.get("used-bytes")),
            "totalBytes": _number(fs.get("total-bytes")),
            "disk": disks or None,
        }
    )


def filesystem_list(fsinfo: Any) -> dict[str, Any]:
    """``guest-get-fsinfo`` as ``VirtualMachineInstanceFileSystemList``."""
    return {"metadata": {}, "items": [_filesystem(fs) for fs in _items(fsinfo)]}


def guest_os_info(
    *, info: Any, osinfo: Any, hostname: Any, timezone: Any, users: Any, fsinfo: Any
) -> dict[str, Any]:
    """``VirtualMachineInstanceGuestAgentInfo`` from the answers of ``guest-info``, ``guest-get-osinfo``,
    ``guest-get-host-name``, ``guest-get-timezone``, ``guest-get-users`` and ``guest-get-fsinfo``
    (None for a command the agent did not answer). The timezone reads ``"<zone>, <offset>"``, as
    upstream formats it."""
    os_fields = osinfo if isinstance(osinfo, Mapping) else {}
    zone = timezone if isinstance(timezone, Mapping) else {}
    offset = _number(zone.get("offset"))
    agent = info if isinstance(info, Mapping) else {}
    commands = [
        _shown(
            {
                "name": _text(c.get("name")),
                "enabled": c.get("enabled") if isinstance(c.get("enabled"), bool) else None,
            }
        )
        for c in _items(agent.get("supported_commands"))
    ]
    return _shown(
        {
            "guestAgentVersion": _text(agent.get("version")),
            "supportedCommands": [c for c in commands if "name" in c] or None,
            "hostname": _text(hostname.get("host-name")) if isinstance(hostname, Mapping) else None,
            "os": _shown({wire: _text(os_fields.get(qga)) for qga, wire in _OS_FIELDS.items()}),
            "timezone": f"{_text(zone.get('zone')) or ''}, {offset}" if offset is not None else None,
            "userList": user_list(users)["items"] if users is not None else None,
            "fsInfo": {"disks": filesystem_list(fsinfo)["items"]} if fsinfo is not None else None,
        }
    )


def _address(entry: Mapping[str, Any]) -> str | None:
    text = _text(entry.get("ip-address"))
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def interfaces(reply: Any) -> tuple[GuestInterface, ...]:
    """``guest-network-get-interfaces`` without loopback, each address checked to be an IP address."""
    found = []
    for iface in _items(reply):
        name, mac = _text(iface.get("name")), _text(iface.get("hardware-address"))
        if name is None or name == "lo":
            continue
        addresses = (_address(a) for a in _items(iface.get("ip-addresses")))
        found.append(
            GuestInterface(name=name, mac=(mac or "").lower(), ip_addresses=tuple(a for a in addresses if a))
        )
    return tuple(found)
