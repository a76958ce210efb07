"""Condition lists: replace by type, keep ``lastTransitionTime`` while the status does not change."""

from __future__ import annotations

from collections.abc import Iterable

from vmplane.api.meta import Condition

__all__ = ["merge_conditions"]


def merge_conditions(
    previous: Iterable[Condition], current: Iterable[Condition], *, now: str
) -> list[Condition]:
    """``current`` with transition times carried over from ``previous`` where the status is unchanged."""
    before = {c.type: c for c in previous}
    merged: list[Condition] = []
    for condition in current:
        old = before.get(condition.type)
        if old is not None and old.status == condition.status and old.last_transition_time:
            merged.append(condition.model_copy(update={"last_transition_time": old.last_transition_time}))
        elif condition.last_transition_time is None:
            merged.append(condition.model_copy(update={"last_transition_time": now}))
        else:
            merged.append(condition)
    return merged
