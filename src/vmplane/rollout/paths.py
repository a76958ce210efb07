"""Paths into a VMI spec's wire form: ``domain.cpu.sockets``, ``domain.devices.disks[name=data]``.

The named lists and the ``[name=...]`` syntax are declared in ``rollout.fields``; this module reads
and writes values at such paths.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["PathError", "delete_path", "get_path", "join", "set_path", "split"]


_SEGMENT = re.compile(r"([^.\[\]]+)(?:\[name=([^\]]+)\])?")


class PathError(ValueError):
    """A path that does not address anything in a VMI spec."""


def join(base: str, key: str) -> str:
    """``base.key`` (or ``key`` at the root)."""
    return f"{base}.{key}" if base else key


def split(path: str) -> list[tuple[str, str | None]]:
    """``a.b[name=x].c`` → ``[("a", None), ("b", "x"), ("c", None)]``."""
    parts: list[tuple[str, str | None]] = []
    for raw in _dotted(path):
        match = _SEGMENT.fullmatch(raw)
        if match is None:
            raise PathError(f"invalid path {path!r}: bad segment {raw!r}")
        parts.append((match.group(1), match.group(2)))
    if not parts:
        raise PathError("empty path")
    return parts


def _dotted(path: str) -> list[str]:
    # Names inside [name=...] may contain dots; split only outside brackets.
    out, depth, current = [], 0, ""
    for char in path:
        if char == "." and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current += char
    out.append(current)
    return [p for p in out if p]


def _named(items: list[Any], name: str) -> int | None:
    return next(
        (i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == name), None
    )


def get_path(doc: dict[str, Any], path: str) -> Any:
    """The value at ``path``, or None where any part of it is absent."""
    node: Any = doc
    for key, name in split(path):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
        if name is not None:
            index = _named(node, name) if isinstance(node, list) else None
            if index is None:
                return None
            node = node[index]
    return node


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` at ``path`` in place, creating parents; ``None`` deletes."""
    if value is None:
        delete_path(doc, path)
        return
    parts = split(path)
    node: Any = doc
    for depth, (key, name) in enumerate(parts):
        last = depth == len(parts) - 1
        if name is None:
            if last:
                node[key] = value
                return
            node = node.setdefault(key, {})
            continue
        items = node.setdefault(key, [])
        index = _named(items, name)
        if last:
            if index is None:
                items.append(value)
            else:
                items[index] = value
            return
        if index is None:
            items.append({"name": name})
            index = len(items) - 1
        node = items[index]


def delete_path(doc: dict[str, Any], path: str) -> None:
    """Remove what is at ``path`` (nothing if absent), pruning parents left empty by it."""
    parts = split(path)
    trail: list[tuple[Any, str | int]] = []
    node: Any = doc
    for key, name in parts:
        if not isinstance(node, dict) or key not in node:
            return
        trail.append((node, key))
        node = node[key]
        if name is not None:
            index = _named(node, name) if isinstance(node, list) else None
            if index is None:
                return
            trail.append((node, index))
            node = node[index]
    container, last = trail.pop()
    del container[last]
    while trail:
        parent, slot = trail.pop()
        if parent[slot] in ({}, []) and isinstance(slot, str) and slot != "domain":
            del parent[slot]
        else:
            break
