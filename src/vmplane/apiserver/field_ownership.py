"""``metadata.managedFields`` at the HTTP edge: who is writing, what they may own, and 409 Conflicts.

The ownership rules are :mod:`vmplane.api.field_managers`; this module reads the manager from the
request (``?fieldManager=`` or, as kube-apiserver, the User-Agent's product), decides which paths no
one owns (object identity and server-set metadata, and the half of the object the other endpoint
writes) and turns conflicts into upstream's ``Status``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from vmplane.api import field_managers
from vmplane.api.field_managers import Entry
from vmplane.api.fieldpath import Path, path_string
from vmplane.apiserver import status as st
from vmplane.apiserver.routing import Target
from vmplane.store.base import JsonObject

__all__ = ["MAX_MANAGER_LENGTH", "applied", "manager_name", "recorded", "with_entries"]

MAX_MANAGER_LENGTH = 128
# apiserver's stripMeta: fields every object has that are never anyone's to own.
_UNOWNED_EXACT: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp")
    }
)
_UNOWNED_PREFIXES: tuple[Path, ...] = (
    ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:selfLink"),
    ("f:metadata", "f:deletionTimestamp"),
)


def _printable(char: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


def manager_name(*, field_manager: str, user_agent: str, options_kind: str) -> str:
    """The manager a write is recorded under; a ``fieldManager`` that is too long or not printable
    is 422 as kube-apiserver's ValidateFieldManager."""
    if field_manager:
        problem = ""
        if len(field_manager.encode()) > MAX_MANAGER_LENGTH:
            problem = f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"
        else:
            bad = next((c for c in field_manager if not _printable(c)), None)
            if bad is not None:
                problem = f'Invalid value: "{field_manager}": invalid character U+{ord(bad):04X}'
        if problem:
            raise st.ApiError(
                code=422,
                reason="Invalid",
                message=f'{options_kind}.meta.k8s.io "" is invalid: fieldManager: {problem}',
            )
        return field_manager
    product = user_agent.split("/")[0]
    return "".join(c for c in product if _printable(c))[:MAX_MANAGER_LENGTH]


def _ignore(target: Target) -> field_managers.Ignore:
    status_only = target.subresource == "status"
    status_elsewhere = target.resource_type.has_status_subresource and not status_only

    def ignored(path: Path) -> bool:
        if status_only:
            return path[0] != "f:status"
        if status_elsewhere and path[0] == "f:status":
            return True
        return path in _UNOWNED_EXACT or any(path[: len(p)] == p for p in _UNOWNED_PREFIXES)

    return ignored


def _entries(obj: JsonObject | None) -> list[Entry]:
    """What an object's managedFields hold; a malformed list (any admin may write one) owns nothing."""
    raw = ((obj or {}).get("metadata") or {}).get("managedFields")
    return field_managers.decode_entries(raw) or []


def with_entries(obj: JsonObject, entries: list[Entry]) -> JsonObject:
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    if entries:
        metadata["managedFields"] = field_managers.encode_entries(entries)
    return {**obj, "metadata": metadata}


def _subresource(target: Target) -> str:
    return "status" if target.subresource == "status" else ""


def recorded(
    *, target: Target, live: JsonObject | None, new: JsonObject, manager: str, now: str
) -> JsonObject:
    """``new`` with the managedFields an update (or, with no ``live``, a create) by ``manager`` leaves.

    As kube-apiserver: a body without managedFields, or with an empty list, keeps the live entries;
    a list of empty entries (``[{}]``) strips them all; a list of valid entries replaces them.
    """
    sent: Any = (new.get("metadata") or {}).get("managedFields")
    if live is not None and not sent:
        base = _entries(live)
    elif isinstance(sent, list) and sent and all(item == {} for item in sent):
        return with_entries(new, [])
    else:
        base = _entries(new)
    entries = field_managers.update(
        live=live,
        new=new,
        entries=base,
        manager=manager,
        api_version=target.resource_type.api_version,
        now=now,
        ignore=_ignore(target),
        subresource=_subresource(target),
    )
    return with_entries(new, entries)


def applied(
    *, target: Target, live: JsonObject | None, config: JsonObject, manager: str, now: str, force: bool
) -> JsonObject:
    """The object an apply of ``config`` by ``manager`` makes of ``live`` (None: nothing there yet),
    with its managedFields; 409 Conflict with upstream's message and causes."""
    try:
        merged, entries = field_managers.apply(
            live=live or {},
            config=config,
            entries=_entries(live),
            manager=manager,
            api_version=target.resource_type.api_version,
            now=now,
            force=force,
            ignore=_ignore(target),
            subresource=_subresource(target),
        )
    except field_managers.ApplyConflicts as err:
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {c.owner.describe()}",
                "field": path_string(c.path),
            }
            for c in err.conflicts
        ]
        raise st.ApiError(code=409, reason="Conflict", message=str(err), details={"causes": causes}) from err
    return with_entries(merged, entries)
