"""Field-level differences between two VMI specs in wire form.

Granularity follows what can change on a running guest: a named list's element (a disk, a volume, an
interface, a network) differs as a whole; placement fields (``nodeSelector``, ``affinity``,
``tolerations``) differ as a whole; everything else differs leaf by leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmplane.rollout.paths import NAMED_LISTS, join

__all__ = ["ATOMIC_FIELDS", "Difference", "diff_specs"]

ATOMIC_FIELDS = frozenset({"nodeSelector", "affinity", "tolerations"})


@dataclass(frozen=True, slots=True)
class Difference:
    """``path`` holds ``running`` in the running spec and ``desired`` in the desired one (None: absent)."""

    path: str
    running: Any
    desired: Any


def diff_specs(running: dict[str, Any], desired: dict[str, Any]) -> list[Difference]:
    """Every difference, in a stable order: fields in the desired spec's order, then removed ones."""
    out: list[Difference] = []
    _diff_dict("", running, desired, out)
    return out


def _diff_dict(base: str, running: dict[str, Any], desired: dict[str, Any], out: list[Difference]) -> None:
    if running == desired:
        return
    keys = list(desired) + [k for k in running if k not in desired]
    for key in keys:
        old, new = running.get(key), desired.get(key)
        if old == new:
            continue
        path = join(base, key)
        if path in NAMED_LISTS and isinstance(old or [], list) and isinstance(new or [], list):
            _diff_named(path, old or [], new or [], out)
        elif isinstance(old, dict) and isinstance(new, dict) and path not in ATOMIC_FIELDS:
            _diff_dict(path, old, new, out)
        else:
            out.append(Difference(path, old, new))


def _diff_named(base: str, running: list[Any], desired: list[Any], out: list[Difference]) -> None:
    old_by_name = {item.get("name"): item for item in running}
    new_by_name = {item.get("name"): item for item in desired}
    names = list(new_by_name) + [n for n in old_by_name if n not in new_by_name]
    for name in names:
        old, new = old_by_name.get(name), new_by_name.get(name)
        if old != new:
            out.append(Difference(f"{base}[name={name}]", old, new))
