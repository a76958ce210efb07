"""Field-level differences between two VMI specs in wire form.

Granularity follows what can change on a running guest: a named list's element (a disk, a volume, an
interface, a network) differs as a whole; placement fields (``nodeSelector``, ``affinity``,
``tolerations``) differ as a whole; everything else differs leaf by leaf. Quantities differ by value,
as upstream's semantic equality has it: ``1Gi`` and ``1024Mi`` are the same size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.fields import NAMED_LISTS, named_path
from vmplane.rollout.paths import join, split

__all__ = ["ATOMIC_FIELDS", "Difference", "diff_models", "diff_specs"]

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


def diff_models(
    running: VirtualMachineInstanceSpec,
    desired: VirtualMachineInstanceSpec,
    *,
    running_wire: dict[str, Any],
    desired_wire: dict[str, Any],
) -> list[Difference]:
    """``diff_specs`` of the two wire forms, without the differences only in how a quantity is written.

    Only the few textual differences are looked up in the typed specs, whose equality compares
    quantities by value; comparing everything by value would cost more than the rest of a plan.
    """
    return [
        d
        for d in diff_specs(running_wire, desired_wire)
        if not (
            _may_hold_quantities(d.running)
            and _may_hold_quantities(d.desired)
            and _same_value(_typed(running, d.path), _typed(desired, d.path))
        )
    ]


def _may_hold_quantities(value: Any) -> bool:
    if isinstance(value, str):
        return value[:1] in _QUANTITY_STARTS
    return isinstance(value, dict | list)


_QUANTITY_STARTS = frozenset("+-.0123456789")


def _same_value(running: Any, desired: Any) -> bool:
    # None on both sides may also mean the path could not be followed (a map key with a dot in it):
    # then the textual difference stands.
    return running is not None and desired is not None and running == desired


@functools.cache
def _attribute(model: type[BaseModel], alias: str) -> str | None:
    return next((name for name, info in model.model_fields.items() if (info.alias or name) == alias), None)


def _typed(spec: BaseModel, path: str) -> Any:
    node: Any = spec
    for key, name in split(path):
        if isinstance(node, BaseModel):
            attribute = _attribute(type(node), key)
            node = getattr(node, attribute) if attribute is not None else None
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
        if name is not None and isinstance(node, list):
            node = next((item for item in node if getattr(item, "name", None) == name), None)
        if node is None:
            return None
    return node


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
            out.append(Difference(named_path(base, name), old, new))
