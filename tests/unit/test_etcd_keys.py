"""etcd key layout, continue tokens and ``--store`` URLs: pure functions, table tests."""

from __future__ import annotations

import base64
import json

import pytest

from vmplane.store.base import InvalidObjectError
from vmplane.store.etcd_client import parse_store_url
from vmplane.store.etcd_keys import (
    ContinueToken,
    decode_continue,
    encode_continue,
    object_key,
    prefix_end,
    scan_prefix,
)


def test_an_object_has_one_key_under_resource_namespace_and_name() -> None:
    assert object_key("/registry", "virtualmachines.kubevirt.io", "default", "vm1") == (
        b"/registry/virtualmachines.kubevirt.io/default/vm1"
    )


def test_a_cluster_scoped_key_is_outside_every_namespace_prefix() -> None:
    key = object_key("/registry", "nodes", "", "node01")
    assert key == b"/registry/nodes//node01"
    assert not key.startswith(scan_prefix("/registry", "nodes", "node01"))
    assert key.startswith(scan_prefix("/registry", "nodes", ""))


def test_a_namespace_prefix_does_not_cover_a_longer_namespace() -> None:
    other = object_key("/registry", "pods", "ab", "x")
    assert not other.startswith(scan_prefix("/registry", "pods", "a"))


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff\xff", b"\x00")],
    ids=["plain", "carry", "all-keys"],
)
def test_prefix_end_is_the_first_key_after_the_prefix(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_a_continue_token_round_trips() -> None:
    token = ContinueToken(42, "default/vm-7\x00")
    assert decode_continue(encode_continue(token)) == token


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        _token(["a list"]),
        _token({"v": "other/v1", "rv": 3, "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": "3", "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": 0, "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": 3, "start": "/escape"}),
        _token({"v": "meta.k8s.io/v1", "rv": 3, "start": "a/../b"}),
        _token({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}),
    ],
    ids=["garbage", "not-object", "other-version", "string-rv", "zero-rv", "absolute", "dotdot", "empty"],
)
def test_a_foreign_continue_token_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidObjectError, match=r"^continue"):
        decode_continue(text)


@pytest.mark.parametrize(
    ("url", "endpoints"),
    [
        ("etcd://127.0.0.1:2379", ("127.0.0.1:2379",)),
        ("etcd://a:1,b:2,c:3", ("a:1", "b:2", "c:3")),
        ("etcd://[::1]:2379", ("[::1]:2379",)),
    ],
    ids=["one", "three", "ipv6"],
)
def test_store_urls_list_their_endpoints_in_order(url: str, endpoints: tuple[str, ...]) -> None:
    assert parse_store_url(url) == endpoints


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:2379",
        "http://a:1",
        "etcd://",
        "etcd://a",
        "etcd://a:0",
        "etcd://a:99999",
        "etcd://u@a:1",
        "etcd://a:1/x",
    ],
    ids=["no-scheme", "other-scheme", "empty", "no-port", "port-0", "port-high", "userinfo", "path"],
)
def test_a_bad_store_url_is_refused_naming_the_flag(url: str) -> None:
    with pytest.raises(ValueError, match="--store"):
        parse_store_url(url)
