"""Issue 8: the pure parts of the limits, table-tested: depth-limited decoders, duplicate keys, and
apimachinery's name, label and annotation rules."""

from __future__ import annotations

import time

import pytest

from vmplane.api.metadata_validation import (
    TOTAL_ANNOTATION_SIZE_LIMIT,
    label_value_errors,
    metadata_causes,
    qualified_name_errors,
)
from vmplane.apiserver import decoders
from vmplane.apiserver.status import ApiError


def _nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [decoders.MAX_DEPTH + 1, 900, 10_000, 100_000])
def test_json_past_the_limit_is_a_400(depth: int) -> None:
    with pytest.raises(ApiError) as raised:
        decoders.load_json(_nested_json(depth))
    assert raised.value.code == 400


def test_json_at_the_limit_decodes() -> None:
    assert decoders.load_json(_nested_json(decoders.MAX_DEPTH)) is not None


def test_yaml_nested_10000_deep_is_refused_in_milliseconds() -> None:
    document = "a: " + "[" * 10_000 + "]" * 10_000
    started = time.perf_counter()
    with pytest.raises(ApiError):
        decoders.load_yaml(document)
    assert time.perf_counter() - started < 0.1


def test_yaml_self_referencing_alias_is_refused() -> None:
    with pytest.raises(ApiError):
        decoders.load_yaml("&a [*a]")


def test_malformed_json_is_a_body_error() -> None:
    with pytest.raises(decoders.BodyError):
        decoders.load_json(b'{"a": ')


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        pytest.param('{"a": 1, "a": 2}', ["a"], id="top"),
        pytest.param('{"spec": {"x": 1, "x": 2}}', ["spec.x"], id="nested"),
        pytest.param('{"l": [{"k": 1, "k": 2}]}', ["l[0].k"], id="in-list"),
        pytest.param('{"a": 1, "b": 2}', [], id="none"),
    ],
)
def test_duplicate_json_keys_are_reported_by_path(text: str, paths: list[str]) -> None:
    found: list[str] = []
    decoders.load_json(text, duplicates=found)
    assert found == paths


def test_duplicate_yaml_keys_are_reported() -> None:
    found: list[str] = []
    decoders.load_yaml("a: 1\na: 2\n", duplicates=found)
    assert found == ["a (line 2)"]


@pytest.mark.parametrize(
    "key",
    ["a", "A-b_c.d", "example.com/name", "kubevirt.io/size", "a" * 63, "x" * 253 + "/y"],
)
def test_valid_qualified_names(key: str) -> None:
    assert qualified_name_errors(key) == []


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "name part must be non-empty"),
        ("a b", "name part must consist of alphanumeric characters, '-', '_' or '.'"),
        ("a" * 64, "name part must be no more than 63 characters"),
        ("/a", "prefix part must be non-empty"),
        ("A.com/a", "prefix part a lowercase RFC 1123 subdomain must consist of"),
        ("a/b/c", "a qualified name must consist of"),
    ],
)
def test_invalid_qualified_names_have_apimachinerys_messages(key: str, message: str) -> None:
    assert any(m.startswith(message) for m in qualified_name_errors(key)), qualified_name_errors(key)


@pytest.mark.parametrize("value", ["", "a", "a-b_c.D", "9" * 63])
def test_valid_label_values(value: str) -> None:
    assert label_value_errors(value) == []


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a/b", "x" * 64])
def test_invalid_label_values(value: str) -> None:
    assert label_value_errors(value)


def test_annotation_size_counts_keys_and_values() -> None:
    half = TOTAL_ANNOTATION_SIZE_LIMIT // 2
    at_limit = {"k": "v" * (half - 1), "j": "w" * (half - 1)}
    assert metadata_causes({"name": "n", "annotations": at_limit}) == []
    over = {"k": "v" * half, "j": "w" * half}
    [cause] = metadata_causes({"name": "n", "annotations": over})
    assert cause.message == "Too long: must have at most 262144 bytes"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        pytest.param({"name": "a.b"}, "metadata.name", id="dotted-namespace-name"),
        pytest.param({"name": "n" * 64}, "metadata.name", id="long-label"),
        pytest.param({"generateName": "a.b-"}, "metadata.generateName", id="dotted-generate-name"),
    ],
)
def test_namespace_names_are_dns_labels(metadata: dict[str, str], field: str) -> None:
    causes = metadata_causes(metadata, namespaced=False, name_rule="label")
    assert [c.field for c in causes] == [field]


def test_a_generate_name_may_end_in_a_dash() -> None:
    assert metadata_causes({"generateName": "web-"}) == []


def test_metadata_namespace_must_be_a_dns_label() -> None:
    [cause] = metadata_causes({"name": "n", "namespace": "a.b"})
    assert cause.field == "metadata.namespace"
