"""Field ownership case by case: path spelling, FieldsV1 decoding, conflict messages, pruning."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api import field_managers, fieldpath
from vmplane.api.field_managers import Conflict, Entry


def _entry(manager: str, operation: field_managers.Operation, *paths: tuple[str, ...]) -> Entry:
    return Entry(manager, operation, "kubevirt.io/v1", "2026-01-01T00:00:00Z", frozenset(paths))


def _nothing_ignored(path: tuple[str, ...]) -> bool:
    return False


@pytest.mark.parametrize(
    ("path", "spelled"),
    [
        (("f:spec", "f:running"), ".spec.running"),
        (("f:spec", "f:disks", 'k:{"name":"d0"}', "f:bus"), '.spec.disks[name="d0"].bus'),
        (("f:metadata", "f:finalizers", 'v:"orphan"'), '.metadata.finalizers[="orphan"]'),
        (("f:items", "i:3"), ".items[3]"),
    ],
    ids=["field", "key", "value", "index"],
)
def test_paths_are_spelled_as_structured_merge_diff_prints_them(path: tuple[str, ...], spelled: str) -> None:
    assert fieldpath.path_string(path) == spelled


@pytest.mark.parametrize(
    "trie",
    [[], {"x:spec": {}}, {"f:spec": []}, {".": {}}, {"k:{bad": {}}, {"f:a": {".": {"f:b": {}}}}],
    ids=[
        "not-an-object",
        "unknown-element",
        "child-not-object",
        "dot-at-root",
        "bad-key-json",
        "dot-not-empty",
    ],
)
def test_malformed_fields_v1_is_refused(trie: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        fieldpath.decode(trie)


def test_a_malformed_entry_makes_the_list_unreadable() -> None:
    assert field_managers.decode_entries([{"manager": "m", "operation": "Delete", "fieldsV1": {}}]) is None
    assert (
        field_managers.decode_entries([{"manager": "m", "operation": "Update", "fieldsType": "FieldsV2"}])
        is None
    )


def test_entries_sort_apply_first_then_by_time() -> None:
    late = Entry("a", "Update", "v1", "2026-01-02T00:00:00Z", frozenset({("f:x",)}))
    early = Entry("b", "Update", "v1", "2026-01-01T00:00:00Z", frozenset({("f:y",)}))
    applier = Entry("z", "Apply", "v1", "2026-01-03T00:00:00Z", frozenset({("f:z",)}))
    assert [e["manager"] for e in field_managers.encode_entries([late, early, applier])] == ["z", "b", "a"]


def test_one_conflict_message_names_manager_version_and_path() -> None:
    conflict = Conflict(_entry("kubectl-edit", "Update"), ("f:spec", "f:running"))
    assert field_managers.conflict_message([conflict]) == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using kubevirt.io/v1: .spec.running'
    )


def test_several_conflicts_are_listed_by_manager() -> None:
    conflicts = [
        Conflict(_entry("b", "Update"), ("f:spec", "f:x")),
        Conflict(_entry("a", "Apply"), ("f:spec", "f:y")),
        Conflict(_entry("b", "Update"), ("f:spec", "f:z")),
    ]
    assert field_managers.conflict_message(conflicts) == (
        'Apply failed with 3 conflicts: conflicts with "a":\n- .spec.y\n'
        'conflicts with "b" using kubevirt.io/v1:\n- .spec.x\n- .spec.z'
    )


def test_an_update_takes_changed_fields_from_their_owner() -> None:
    owner = _entry("apply", "Apply", ("f:spec", "f:a"), ("f:spec", "f:b"))
    entries = field_managers.update(
        live={"spec": {"a": 1, "b": 2}},
        new={"spec": {"a": 5, "b": 2}},
        entries=[owner],
        manager="edit",
        api_version="kubevirt.io/v1",
        now="now",
        ignore=_nothing_ignored,
    )
    by_manager = {e.manager: e.fields for e in entries}
    assert by_manager == {"apply": frozenset({("f:spec", "f:b")}), "edit": frozenset({("f:spec", "f:a")})}


def test_an_update_that_changes_nothing_keeps_the_entries_as_they_were() -> None:
    owner = _entry("apply", "Apply", ("f:spec", "f:a"))
    same = field_managers.update(
        live={"spec": {"a": 1}},
        new={"spec": {"a": 1}},
        entries=[owner],
        manager="edit",
        api_version="v1",
        now="now",
        ignore=_nothing_ignored,
    )
    assert same == [owner]


def test_a_removed_field_is_owned_by_no_one() -> None:
    owner = _entry("apply", "Apply", ("f:spec", "f:a"))
    entries = field_managers.update(
        live={"spec": {"a": 1, "b": 2}},
        new={"spec": {"b": 2}},
        entries=[owner],
        manager="edit",
        api_version="v1",
        now="now",
        ignore=_nothing_ignored,
    )
    assert entries == []


def test_apply_keeps_a_dropped_field_another_manager_also_owns() -> None:
    mine = _entry("me", "Apply", ("f:spec", "f:a"), ("f:spec", "f:b"))
    theirs = _entry("them", "Update", ("f:spec", "f:b"))
    obj, entries = field_managers.apply(
        live={"spec": {"a": 1, "b": 2}},
        config={"spec": {}},
        entries=[mine, theirs],
        manager="me",
        api_version="kubevirt.io/v1",
        now="now",
        force=False,
        ignore=_nothing_ignored,
    )
    assert obj == {"spec": {"b": 2}}
    # An empty map in the configuration is a field of its own, as upstream's ToFieldSet makes it.
    assert {e.manager: e.fields for e in entries} == {
        "them": frozenset({("f:spec", "f:b")}),
        "me": frozenset({("f:spec",)}),
    }


def test_apply_keeps_unowned_fields_beside_the_ones_it_drops() -> None:
    mine = _entry("me", "Apply", ("f:spec", "f:cpu", "f:cores"))
    obj, _ = field_managers.apply(
        live={"spec": {"cpu": {"cores": 2, "model": "host-model"}}},
        config={"spec": {}},
        entries=[mine],
        manager="me",
        api_version="v1",
        now="now",
        force=False,
        ignore=_nothing_ignored,
    )
    assert obj == {"spec": {"cpu": {"model": "host-model"}}}


def test_apply_removes_an_item_it_no_longer_applies_and_keeps_others_items() -> None:
    d0, d1 = 'k:{"name":"d0"}', 'k:{"name":"d1"}'
    mine = _entry("me", "Apply", ("f:disks", d0), ("f:disks", d0, "f:name"))
    theirs = _entry("them", "Update", ("f:disks", d1), ("f:disks", d1, "f:name"))
    obj, _ = field_managers.apply(
        live={"disks": [{"name": "d0"}, {"name": "d1"}]},
        config={"disks": []},
        entries=[mine, theirs],
        manager="me",
        api_version="v1",
        now="now",
        force=False,
        ignore=_nothing_ignored,
    )
    assert obj == {"disks": [{"name": "d1"}]}


def test_ignored_paths_are_never_owned() -> None:
    _, entries = field_managers.apply(
        live={},
        config={"metadata": {"name": "x"}, "spec": {"a": 1}},
        entries=[],
        manager="me",
        api_version="v1",
        now="now",
        force=False,
        ignore=lambda path: path[0] == "f:metadata",
    )
    assert [e.fields for e in entries] == [frozenset({("f:spec", "f:a")})]
