"""The resourceVersion options of list and watch, checked as apimachinery's ``ValidateListOptions``.

``resourceVersionMatch`` says how a list's ``resourceVersion`` is read: ``NotOlderThan`` (or unset,
with a version other than ``0``) serves data at least that new, waiting briefly for it
(``freshness``); ``Exact`` serves the state at exactly that revision. vmplane's stores cannot read
at a past revision, so an ``Exact`` list of an older revision answers ``410 Expired`` as etcd does
for a compacted one, never current data under an old version. ``sendInitialEvents`` (watch-list)
makes a watch start with the current state and a bookmark marking its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmplane.api.errors import CauseType, FieldCause
from vmplane.apiserver import status as st
from vmplane.apiserver.context import query_bool

__all__ = ["EXACT", "NOT_OLDER_THAN", "ListOptions", "invalid_list_options", "list_options"]

EXACT, NOT_OLDER_THAN = "Exact", "NotOlderThan"
_FIELD = "resourceVersionMatch"


@dataclass(frozen=True, slots=True)
class ListOptions:
    """``resource_version``: None when absent; ``0`` means "any" (served from the cache)."""

    resource_version: int | None
    match: str
    send_initial_events: bool


def _forbidden(field: str, message: str) -> FieldCause:
    return FieldCause(field, f"Forbidden: {message}", CauseType.FIELD_VALUE_FORBIDDEN)


def _causes(query: Mapping[str, str], *, watch: bool) -> list[FieldCause]:
    causes: list[FieldCause] = []
    match, version = query.get(_FIELD, ""), query.get("resourceVersion", "")
    initial_events = "sendInitialEvents" in query
    if match:
        if watch:
            if not initial_events:
                causes.append(
                    _forbidden(
                        _FIELD,
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    )
                )
            if match != NOT_OLDER_THAN:
                causes.append(_unsupported(match, (NOT_OLDER_THAN,)))
        else:
            if not version:
                causes.append(
                    _forbidden(_FIELD, "resourceVersionMatch is forbidden unless resourceVersion is provided")
                )
            if match not in (EXACT, NOT_OLDER_THAN):
                causes.append(_unsupported(match, (EXACT, NOT_OLDER_THAN, "")))
            if match == EXACT and version == "0":
                causes.append(
                    _forbidden(_FIELD, 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
                )
        if query.get("continue"):
            causes.append(_forbidden(_FIELD, "resourceVersionMatch is forbidden when continue is provided"))
    if initial_events:
        if not watch:
            causes.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
        elif match != NOT_OLDER_THAN:
            causes.append(
                _forbidden(_FIELD, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
            )
        elif not query_bool(query.get("allowWatchBookmarks")):
            causes.append(
                _forbidden(
                    "allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true"
                )
            )
    return causes


def _unsupported(value: str, supported: tuple[str, ...]) -> FieldCause:
    shown = ", ".join(f'"{v}"' for v in supported)
    return FieldCause(
        _FIELD,
        f'Unsupported value: "{value}": supported values: {shown}',
        CauseType.FIELD_VALUE_NOT_SUPPORTED,
    )


def invalid_list_options(causes: list[FieldCause]) -> st.ApiError:
    """Kubernetes' ``ListOptions.meta.k8s.io "" is invalid`` (422) for ``causes``."""
    parts = [f"{c.field}: {c.message}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return st.ApiError(
        code=422,
        reason="Invalid",
        message=f'ListOptions.meta.k8s.io "" is invalid: {summary}',
        details={
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [{"reason": c.reason.value, "message": c.message, "field": c.field} for c in causes],
        },
    )


def list_options(query: Mapping[str, str], *, watch: bool) -> ListOptions:
    """The request's options, or the 4xx ``Status`` apimachinery answers for them."""
    causes = _causes(query, watch=watch)
    if causes:
        raise invalid_list_options(causes)
    raw = query.get("resourceVersion", "")
    try:
        version = int(raw) if raw else None
    except ValueError as err:
        raise st.bad_request(f"resourceVersion: Invalid value: {raw!r}: must be an integer") from err
    if version is not None and version < 0:
        raise st.bad_request(f"resourceVersion: Invalid value: {raw!r}: must not be negative")
    return ListOptions(
        resource_version=version,
        match=query.get(_FIELD, ""),
        send_initial_events=query_bool(query.get("sendInitialEvents")),
    )
