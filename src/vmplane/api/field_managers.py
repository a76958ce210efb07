"""Field ownership across writes: ``metadata.managedFields`` updated by applies and updates (pure).

This is structured-merge-diff's ``Updater`` over :mod:`vmplane.api.fieldpath` sets:

* an **update** (create, PUT, merge/JSON/strategic patch) gives its manager every field it adds or
  changes and takes those fields from whoever owned them; a field it removes is owned by no one;
* an **apply** merges the applied configuration over the live object, removes the fields the
  applier applied last time and no longer applies (unless someone else owns them), and fails with
  :class:`ApplyConflicts` when it would change a field another manager owns, unless forced, in
  which case the applier takes the field over. The applier owns exactly what it applied.

Entries are identified, as upstream, by manager, operation and subresource; ``time`` changes only
on the entry of the manager that changed something.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from vmplane.api import fieldpath
from vmplane.api.fieldpath import FieldSet, ListRules, Path

__all__ = [
    "ApplyConflicts",
    "Conflict",
    "Entry",
    "Operation",
    "apply",
    "conflict_message",
    "decode_entries",
    "encode_entries",
    "update",
]

Operation = Literal["Apply", "Update"]
Ignore = Callable[[Path], bool]


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``managedFields`` entry."""

    manager: str
    operation: Operation
    api_version: str
    time: str | None
    fields: FieldSet
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        """How upstream names the manager in a conflict: ``"kubectl-edit" using kubevirt.io/v1``."""
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


@dataclass(frozen=True, slots=True)
class Conflict:
    owner: Entry
    path: Path


class ApplyConflicts(Exception):
    """An apply would change fields other managers own; ``conflicts`` lists each (owner, path)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(conflict_message(conflicts))
        self.conflicts = conflicts


def conflict_message(conflicts: list[Conflict]) -> str:
    """Upstream's ``Apply failed with N conflict(s): ...`` text."""
    if len(conflicts) == 1:
        only = conflicts[0]
        return (
            f"Apply failed with 1 conflict: conflict with {only.owner.describe()}: "
            f"{fieldpath.path_string(only.path)}"
        )
    lines: list[str] = []
    for owner in sorted({c.owner.describe() for c in conflicts}):
        lines.append(f"conflicts with {owner}:")
        lines += [f"- {fieldpath.path_string(c.path)}" for c in conflicts if c.owner.describe() == owner]
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def decode_entries(raw: Any) -> list[Entry] | None:
    """Entries from a stored or sent ``managedFields``; None when any entry is malformed."""
    if not isinstance(raw, list):
        return None
    entries: list[Entry] = []
    for item in raw:
        if not isinstance(item, dict):
            return None
        manager, operation = item.get("manager"), item.get("operation")
        if not isinstance(manager, str) or operation not in ("Apply", "Update"):
            return None
        if item.get("fieldsType", "FieldsV1") != "FieldsV1":
            return None
        try:
            fields = fieldpath.decode(item.get("fieldsV1") or {})
        except ValueError:
            return None
        time, subresource = item.get("time"), item.get("subresource", "")
        entries.append(
            Entry(
                manager=manager,
                operation=operation,
                api_version=str(item.get("apiVersion", "")),
                time=time if isinstance(time, str) else None,
                fields=fields,
                subresource=subresource if isinstance(subresource, str) else "",
            )
        )
    return entries


def encode_entries(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """``managedFields`` as stored: Apply before Update, then by time and manager, as upstream sorts."""
    ordered = sorted(entries, key=lambda e: (e.operation, e.time or "", e.manager, e.subresource))
    out: list[dict[str, Any]] = []
    for entry in ordered:
        encoded: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
        }
        if entry.time is not None:
            encoded["time"] = entry.time
        encoded["fieldsType"] = "FieldsV1"
        encoded["fieldsV1"] = fieldpath.encode(entry.fields)
        if entry.subresource:
            encoded["subresource"] = entry.subresource
        out.append(encoded)
    return out


def _owned(fields: FieldSet, ignore: Ignore) -> FieldSet:
    return frozenset(p for p in fields if not ignore(p))


def _transfer(
    *,
    old: Any,
    new: Any,
    entries: list[Entry],
    actor: tuple[str, str, str],
    ignore: Ignore,
    rules: ListRules,
    force: bool,
) -> tuple[list[Entry], fieldpath.Comparison]:
    """Others' entries after ``old`` became ``new``: fields changed are taken from them (a conflict
    unless ``force``), fields removed are dropped. Empty entries disappear."""
    comparison = fieldpath.compare(old, new, rules)
    changed = _owned(comparison.added | comparison.modified, ignore)
    removed = _owned(comparison.removed, ignore)
    conflicts = [
        Conflict(owner=entry, path=path)
        for entry in entries
        if entry.identity != actor
        for path in sorted(entry.fields & changed)
    ]
    if conflicts and not force:
        raise ApplyConflicts(conflicts)
    comparison = fieldpath.Comparison(
        added=changed & comparison.added, removed=removed, modified=changed & comparison.modified
    )
    kept: list[Entry] = []
    for entry in entries:
        if entry.identity == actor:
            continue
        remaining = entry.fields - changed - removed
        if remaining:
            kept.append(entry if remaining == entry.fields else replace(entry, fields=remaining))
    return kept, comparison


def update(
    *,
    live: Any,
    new: Any,
    entries: list[Entry],
    manager: str,
    api_version: str,
    now: str,
    ignore: Ignore,
    subresource: str = "",
    rules: ListRules = fieldpath.KUBEVIRT_LISTS,
) -> list[Entry]:
    """The entries after an update by ``manager`` turned ``live`` into ``new`` (``live`` is None for a
    create)."""
    actor = (manager, "Update", subresource)
    others, comparison = _transfer(
        old=live, new=new, entries=entries, actor=actor, ignore=ignore, rules=rules, force=True
    )
    if comparison.empty:
        return entries
    previous = next((e for e in entries if e.identity == actor), None)
    own = previous.fields if previous else frozenset()
    fields = (own - comparison.removed) | comparison.added | comparison.modified
    if not fields:
        return others
    return [*others, Entry(manager, "Update", api_version, now, fields, subresource)]


def apply(
    *,
    live: Any,
    config: Any,
    entries: list[Entry],
    manager: str,
    api_version: str,
    now: str,
    force: bool,
    ignore: Ignore,
    subresource: str = "",
    rules: ListRules = fieldpath.KUBEVIRT_LISTS,
) -> tuple[Any, list[Entry]]:
    """The object and entries after ``manager`` applies ``config`` to ``live``.

    Raises :class:`ApplyConflicts` when, without ``force``, the result changes a field another
    manager owns.
    """
    actor = (manager, "Apply", subresource)
    applied = _owned(fieldpath.field_set(config, rules), ignore)
    merged = fieldpath.merge(live, config, rules)
    previous = next((e for e in entries if e.identity == actor), None)
    if previous is not None:
        others_closure = fieldpath.prefixes(p for e in entries if e.identity != actor for p in e.fields)
        keep = fieldpath.prefixes(applied) | others_closure
        merged = fieldpath.remove(merged, previous.fields - keep, rules, keep)
    others, comparison = _transfer(
        old=live, new=merged, entries=entries, actor=actor, ignore=ignore, rules=rules, force=force
    )
    if previous is not None and previous.fields == applied and comparison.empty:
        return merged, entries
    if not applied:
        return merged, others
    return merged, [*others, Entry(manager, "Apply", api_version, now, applied, subresource)]
