"""Field paths and field sets as server-side apply sees an object (pure).

Kubernetes' structured-merge-diff describes who owns what with sets of paths into an object. This
module holds that algebra, written here because no Python library implements it:

* a :data:`Path` is a tuple of path elements spelled as in ``managedFields`` (``f:spec``,
  ``k:{"name":"disk0"}``, ``v:"finalizer"``), so a set encodes to ``fieldsV1`` without translation;
* :func:`leaves` walks an object as upstream's ``ToFieldSet`` does: scalars, atomic lists, empty or
  null maps and every list item are members; a non-empty map is only the prefix of its members;
* :func:`compare` splits what changed between two objects into added, removed and modified paths;
* :func:`merge` lays an applied configuration over a live object, :func:`remove` takes paths out;
* :func:`encode`/:func:`decode` convert a set to and from the ``FieldsV1`` trie.

Which lists are sets or maps keyed by some of their items' fields is data (:class:`ListRules`), as
upstream reads it from ``x-kubernetes-list-type``/``x-kubernetes-list-map-keys``; every other list is
atomic and owned whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ITEM",
    "KUBEVIRT_LISTS",
    "Comparison",
    "FieldSet",
    "ListRules",
    "Path",
    "compare",
    "decode",
    "encode",
    "field_set",
    "leaves",
    "merge",
    "path_string",
    "prefixes",
    "remove",
]

Path = tuple[str, ...]
FieldSet = frozenset[Path]


class _Item:
    """The value :func:`leaves` gives a list item: present, compared through its own members."""

    def __repr__(self) -> str:
        return "ITEM"


ITEM: Final = _Item()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ListRules:
    """How lists are merged and owned: by the name of the list's field, or by its full path."""

    keys_by_field: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keys_by_path: Mapping[Path, tuple[str, ...]] = field(default_factory=dict)
    sets_by_path: frozenset[Path] = frozenset()

    def keys(self, path: Path) -> tuple[str, ...] | None:
        """The item keys of the list at ``path``, or None when it is not a map list."""
        if path in self.keys_by_path:
            return self.keys_by_path[path]
        if path and path[-1].startswith("f:"):
            return self.keys_by_field.get(path[-1][2:])
        return None

    def is_set(self, path: Path) -> bool:
        return path in self.sets_by_path


# KubeVirt's disks, interfaces, volumes and networks are maps keyed by name in its CRD; ObjectMeta's
# ownerReferences are keyed by uid and its finalizers are a set (+listType in apimachinery).
KUBEVIRT_LISTS: Final = ListRules(
    keys_by_field={name: ("name",) for name in ("disks", "interfaces", "volumes", "networks")},
    keys_by_path={("f:metadata", "f:ownerReferences"): ("uid",)},
    sets_by_path=frozenset({("f:metadata", "f:finalizers")}),
)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict) or not all(k in item and _scalar(item[k]) for k in keys):
        return None
    return "k:" + _json({k: item[k] for k in keys})


def _list_elements(value: list[Any], path: Path, rules: ListRules) -> list[str] | None:
    """Each item's path element, or None when the list is owned whole (atomic, or items that cannot
    be told apart: a missing key, a duplicate, a set item that is not a scalar)."""
    keys = rules.keys(path)
    if keys is not None:
        elements = [_item_key(item, keys) for item in value]
    elif rules.is_set(path):
        elements = ["v:" + _json(item) if _scalar(item) else None for item in value]
    else:
        return None
    if any(e is None for e in elements) or len(set(elements)) != len(elements):
        return None
    return [e for e in elements if e is not None]


def leaves(obj: Any, rules: ListRules = KUBEVIRT_LISTS, path: Path = ()) -> dict[Path, Any]:
    """Every member path of ``obj`` and the value compared there (:data:`ITEM` for a list item)."""
    out: dict[Path, Any] = {}
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        child = (*path, f"f:{key}")
        _walk(value, child, rules, out)
    return out


def _walk(value: Any, path: Path, rules: ListRules, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        out.update(leaves(value, rules, path))
    elif isinstance(value, list) and value and (elements := _list_elements(value, path, rules)) is not None:
        for element, item in zip(elements, value, strict=True):
            item_path = (*path, element)
            out[item_path] = ITEM
            if isinstance(item, dict):
                out.update(leaves(item, rules, item_path))
    else:
        out[path] = value


def field_set(obj: Any, rules: ListRules = KUBEVIRT_LISTS) -> FieldSet:
    return frozenset(leaves(obj, rules))


def prefixes(paths: Iterable[Path]) -> FieldSet:
    """Every path in ``paths`` and each of its ancestors (the empty path excluded)."""
    return frozenset(p[:n] for p in paths for n in range(1, len(p) + 1))


@dataclass(frozen=True, slots=True)
class Comparison:
    added: FieldSet
    removed: FieldSet
    modified: FieldSet

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified)


def compare(old: Any, new: Any, rules: ListRules = KUBEVIRT_LISTS) -> Comparison:
    """What ``new`` adds, removes and changes relative to ``old`` (values compared as JSON, so
    ``1`` and ``true`` differ)."""
    before, after = leaves(old, rules), leaves(new, rules)
    modified = frozenset(
        p
        for p in before.keys() & after.keys()
        if before[p] is not ITEM and (after[p] is ITEM or _json(before[p]) != _json(after[p]))
    )
    return Comparison(
        added=frozenset(after.keys() - before.keys()),
        removed=frozenset(before.keys() - after.keys()),
        modified=modified,
    )


def merge(live: Any, config: Any, rules: ListRules = KUBEVIRT_LISTS, path: Path = ()) -> Any:
    """``config`` laid over ``live``: maps merge field by field, map lists and sets item by item
    (live order kept, new items appended), everything else is replaced. A null removes the field."""
    if isinstance(live, dict) and isinstance(config, dict):
        result = dict(live)
        for key, value in config.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge(live.get(key), value, rules, (*path, f"f:{key}"))
        return result
    if isinstance(live, list) and isinstance(config, list):
        live_elements = _list_elements(live, path, rules)
        config_elements = _list_elements(config, path, rules)
        if live_elements is not None and config_elements is not None:
            applied = dict(zip(config_elements, config, strict=True))
            result_list = [
                merge(item, applied[element], rules, (*path, element)) if element in applied else item
                for element, item in zip(live_elements, live, strict=True)
            ]
            known = set(live_elements)
            result_list += [
                copy.deepcopy(item)
                for element, item in zip(config_elements, config, strict=True)
                if element not in known
            ]
            return result_list
    return copy.deepcopy(config)


def _child(container: Any, element: str, rules: ListRules, path: Path) -> tuple[Any, Any] | None:
    """(key or index, value) of ``element`` inside ``container``, or None when it is not there."""
    if element.startswith("f:") and isinstance(container, dict):
        name = element[2:]
        return (name, container[name]) if name in container else None
    if isinstance(container, list):
        elements = _list_elements(container, path, rules)
        if elements is not None and element in elements:
            index = elements.index(element)
            return index, container[index]
    return None


def remove(
    obj: Any, paths: Iterable[Path], rules: ListRules = KUBEVIRT_LISTS, keep: FieldSet = frozenset()
) -> Any:
    """``obj`` without the values at ``paths``; a map or list emptied by a removal goes too, unless
    its path is in ``keep``. Paths that are not in ``obj`` are ignored."""
    result = copy.deepcopy(obj)
    # Shallowest first: a list item goes whole before its fields are looked for. A key field of an
    # item that stays is left alone, or the item could no longer be told apart.
    for target in sorted(paths, key=len):
        if not _is_key_field(target):
            _remove_one(result, target, rules, keep)
    return result


def _is_key_field(path: Path) -> bool:
    return len(path) >= 2 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:])


def _remove_one(root: Any, target: Path, rules: ListRules, keep: FieldSet) -> None:
    chain: list[tuple[Any, Any]] = []  # (container, key or index) from the root down
    container = root
    for depth, element in enumerate(target):
        found = _child(container, element, rules, target[:depth])
        if found is None:
            return
        chain.append((container, found[0]))
        container = found[1]
    for depth in range(len(chain) - 1, -1, -1):
        parent, key = chain[depth]
        del parent[key]
        if parent or depth == 0 or target[:depth] in keep:
            return


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` trie of a set: a member with members under it also holds ``"."``."""
    root: dict[str, Any] = {}
    members = set(paths)
    for path in members:
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = root
        for element in path:
            node = node[element]
        if node:
            node["."] = {}
    return _sorted(root)


_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    # "." first, then fields, keys, values, indexes, as structured-merge-diff orders path elements.
    order = sorted(node, key=lambda e: (-1, "") if e == "." else (_RANK.get(e[:1], 4), e))
    return {element: _sorted(node[element]) for element in order}


def decode(trie: Any) -> FieldSet:
    """The set a ``fieldsV1`` trie holds; raises ValueError naming what is malformed."""
    if not isinstance(trie, dict):
        raise ValueError("fieldsV1 must be an object")
    out: set[Path] = set()
    _decode_node(trie, (), out)
    return frozenset(out)


def _decode_node(node: dict[str, Any], path: Path, out: set[Path]) -> None:
    for element, child in node.items():
        if element == ".":
            if not path or child != {}:
                raise ValueError(f'"." must be an empty object inside a path, at {path_string(path)}')
            out.add(path)
            continue
        if element[:2] not in ("f:", "k:", "v:", "i:") or not isinstance(child, dict):
            raise ValueError(f"invalid path element {element!r} at {path_string(path) or '.'}")
        if element[:2] in ("k:", "v:"):
            try:
                json.loads(element[2:])
            except ValueError as err:
                raise ValueError(f"invalid path element {element!r}: {err}") from err
        child_path = (*path, element)
        if child:
            _decode_node(child, child_path, out)
        else:
            out.add(child_path)


def path_string(path: Path) -> str:
    """A path as structured-merge-diff prints it: ``.spec.disks[name="a"].bus``, ``[="v"]``, ``[3]``."""
    parts: list[str] = []
    for element in path:
        kind, rest = element[:2], element[2:]
        if kind == "f:":
            parts.append(f".{rest}")
        elif kind == "k:":
            fields = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) + "]")
        elif kind == "v:":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)
