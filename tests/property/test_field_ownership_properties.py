"""Invariants of the server-side apply algebra over generated objects (maps, atomic lists and a
``disks`` list keyed by name, as KubeVirt's)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmplane.api import field_managers, fieldpath
from vmplane.api.fieldpath import ITEM, Path

_SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.booleans())
_NOTHING_IGNORED = lambda path: False  # noqa: E731 - the algebra itself, with no server rules on top


def _objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    if depth == 0:
        return st.dictionaries(st.sampled_from(["a", "b", "c"]), _SCALARS, max_size=3)
    inner = _objects(depth - 1)
    value = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2), inner)
    disks = st.lists(
        st.builds(lambda name, rest: {"name": name, **rest}, st.sampled_from(["d1", "d2", "d3"]), inner),
        unique_by=lambda disk: disk["name"],
        max_size=3,
    )
    return st.builds(
        lambda fields, extra: {**fields, **extra},
        st.dictionaries(st.sampled_from(["a", "b", "c"]), value, max_size=3),
        st.one_of(st.just({}), st.builds(lambda d: {"disks": d}, disks)),
    )


OBJECTS = _objects(2)
PATHS = st.lists(
    st.one_of(
        st.sampled_from(["a", "b", "disks"]).map(lambda n: f"f:{n}"),
        st.sampled_from(["d1", "d2"]).map(lambda n: "k:" + json.dumps({"name": n}, separators=(",", ":"))),
        _SCALARS.map(lambda v: "v:" + json.dumps(v)),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


def _scalar_leaves(obj: Any) -> dict[Path, Any]:
    return {
        p: v for p, v in fieldpath.leaves(obj).items() if v is not ITEM and not isinstance(v, dict | list)
    }


def _apply(
    live: Any, config: Any, entries: list[field_managers.Entry], manager: str, *, force: bool = False
) -> Any:
    return field_managers.apply(
        live=live,
        config=config,
        entries=entries,
        manager=manager,
        api_version="v1",
        now="t",
        force=force,
        ignore=_NOTHING_IGNORED,
    )


def _set(obj: Any, path: Path, value: Any) -> Any:
    result = copy.deepcopy(obj)
    node = result
    for element in path[:-1]:
        if element.startswith("f:"):
            node = node[element[2:]]
        else:
            name = json.loads(element[2:])["name"]
            node = next(item for item in node if item["name"] == name)
    node[path[-1][2:]] = value
    return result


@settings(max_examples=200, deadline=None)
@given(st.sets(PATHS, max_size=6))
def test_fields_v1_encoding_round_trips(paths: set[Path]) -> None:
    encoded = fieldpath.encode(paths)
    assert fieldpath.decode(json.loads(json.dumps(encoded))) == frozenset(paths)


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_an_object_compared_with_itself_has_no_changes(obj: dict[str, Any]) -> None:
    assert fieldpath.compare(obj, copy.deepcopy(obj)).empty


@settings(max_examples=200, deadline=None)
@given(OBJECTS, OBJECTS)
def test_merge_keeps_every_applied_scalar(live: dict[str, Any], config: dict[str, Any]) -> None:
    merged = _scalar_leaves(fieldpath.merge(live, config))
    for path, value in _scalar_leaves(config).items():
        assert json.dumps(merged[path]) == json.dumps(value)


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_applying_the_same_configuration_twice_changes_nothing(config: dict[str, Any]) -> None:
    first, entries = _apply({}, config, [], "a")
    second, again = _apply(first, config, entries, "a")
    assert second == first
    assert again == entries


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_the_applier_owns_exactly_what_it_applied(config: dict[str, Any]) -> None:
    _, entries = _apply({}, config, [], "a")
    owned = frozenset().union(*(e.fields for e in entries))
    assert owned == fieldpath.field_set(config)


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_a_second_applier_of_the_same_values_shares_ownership_without_conflict(
    config: dict[str, Any],
) -> None:
    obj, entries = _apply({}, config, [], "a")
    again, shared = _apply(obj, config, entries, "b")
    assert again == obj
    for entry in shared:
        assert entry.fields == fieldpath.field_set(config)


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_applying_nothing_removes_everything_the_applier_alone_owned(config: dict[str, Any]) -> None:
    obj, entries = _apply({}, config, [], "a")
    emptied, left = _apply(obj, {}, entries, "a")
    assert emptied == {}
    assert left == []


@settings(max_examples=200, deadline=None)
@given(OBJECTS, st.data())
def test_changing_another_managers_scalar_conflicts_unless_forced(
    config: dict[str, Any], data: st.DataObject
) -> None:
    # A key field names its item (changing it makes another item), so it is no one's to change.
    scalars = {
        p: v
        for p, v in _scalar_leaves(config).items()
        if not (p[-2:-1] and p[-2].startswith("k:") and p[-1] == "f:name")
    }
    if not scalars:
        return
    obj, entries = _apply({}, config, [], "a")
    path = data.draw(st.sampled_from(sorted(scalars)))
    edited = _set(obj, path, "changed-by-b")
    entries = field_managers.update(
        live=obj, new=edited, entries=entries, manager="b", api_version="v1", now="t", ignore=_NOTHING_IGNORED
    )
    with pytest.raises(field_managers.ApplyConflicts) as refused:
        _apply(edited, config, entries, "a")
    assert [(c.owner.manager, c.path) for c in refused.value.conflicts] == [("b", path)]
    forced, after = _apply(edited, config, entries, "a", force=True)
    assert _scalar_leaves(forced)[path] == scalars[path]
    assert all(path not in e.fields for e in after if e.manager == "b")
