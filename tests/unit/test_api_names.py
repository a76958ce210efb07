"""The name and path grammars shared by admission and the agent (``api.names``), as upstream has them."""

from __future__ import annotations

import pytest

from vmplane.api.names import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    image_reference_errors,
    inner_path_errors,
    interface_name_ok,
    serial_errors,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("reference", "ok"),
    [
        ("quay.io/containerdisks/fedora:40", True),
        ("registry:5000/a/b@" + DIGEST, True),
        ("fedora", True),
        ("localhost/a__b/c-d.e:v1.2_3", True),
        ("[::1]:5000/a/b:1", True),
        ("../../etc", False),
        ("/etc/passwd", False),
        ("a//b", False),
        ("a/../b", False),
        ("a/b:", False),
        ("a/b@sha256:abc", False),
        ("a/b:tag,x=y", False),
        ("a\x00b", False),
        ("a\nb", False),
        ("", False),
    ],
    ids=lambda v: repr(v)[:30] if isinstance(v, str) else str(v),
)
def test_image_references_follow_the_distribution_grammar(reference: str, ok: bool) -> None:
    assert (image_reference_errors(reference) == []) is ok


def test_an_upper_case_repository_is_named_as_such() -> None:
    assert image_reference_errors("Quay.io/Fedora") == ["repository name must be lowercase"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/disk/a.qcow2", None),
        ("/vmlinuz/", None),
        ("/", "f must not point to root"),
        ("disk.img", "f must be an absolute path to a file without relative components"),
        ("/a/../b", "f must be an absolute path to a file without relative components"),
        ("/a/./b", "f must be an absolute path to a file without relative components"),
        ("//a", "f must be an absolute path to a file without relative components"),
        ("/a//b", "f must be an absolute path to a file without relative components"),
        ("/a\x00", "f must not contain a NUL character"),
    ],
    ids=["plain", "trailing-slash", "root", "relative", "dot-dot", "dot", "double-leading", "double", "nul"],
)
def test_paths_inside_an_image_follow_kubevirts_validate_path(path: str, message: str | None) -> None:
    assert inner_path_errors("f", path) == ([message] if message else [])


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        ("a-1", True, True),
        ("a.b", False, True),
        ("..", False, False),
        ("A", False, False),
        ("a" * 64, False, True),
    ],
    ids=["label", "dotted", "dot-dot", "upper", "long-label"],
)
def test_dns1123_rules(value: str, label: bool, subdomain: bool) -> None:
    assert (not dns1123_label_errors(value), not dns1123_subdomain_errors(value)) == (label, subdomain)


def test_a_long_label_is_refused_with_kubernetes_length_message() -> None:
    assert dns1123_label_errors("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize(("name", "ok"), [("eth_0-A", True), ("a,b", False), ("a.b", False), ("", False)])
def test_interface_names_follow_kubevirts_rule(name: str, ok: bool) -> None:
    assert interface_name_ok(name) is ok


def test_serial_rules_are_kubevirts() -> None:
    assert serial_errors("d", "ab.C+1_-") == []
    assert serial_errors("d", "x,y") == [
        "d must be made up of the following characters [A-Za-z0-9_.+-], if specified"
    ]
    assert serial_errors("d", "x" * 257) == ["d must be less than or equal to 256 in length, if specified"]
