"""Issue 8, Deliver 5 (HTTP edge): duplicate keys under Strict/Warn, delete preconditions, bytes a
header must not carry, and writes that change nothing; against a real ``vmplane serve``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from limits_support import VM_NAMESPACE_PATH, LimitsServer, serving, vm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    with serving(tmp_path_factory.mktemp("edge")) as running:
        yield running


def _duplicated_vm(name: str) -> str:
    body = json.dumps(vm(name))
    # the same key twice inside spec: {"spec": {"runStrategy": "Halted", "runStrategy": "Always", ...}}
    return body.replace('"runStrategy": "Halted"', '"runStrategy": "Halted", "runStrategy": "Always"')


def _events_after(server: LimitsServer, path: str, resource_version: str) -> list[dict[str, Any]]:
    status, _, _ = server.request("GET", path)
    assert status == 200
    response = server.http().request(
        "GET",
        f"{server.url}{path}?watch=1&resourceVersion={resource_version}&timeoutSeconds=1",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    return [json.loads(line) for line in response.data.splitlines() if line.strip()]


def test_duplicate_json_keys_are_refused_under_strict(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "POST", VM_NAMESPACE_PATH + "?fieldValidation=Strict", body=_duplicated_vm("dup-strict")
    )
    assert status == 400, body
    assert body["reason"] == "BadRequest"
    assert body["message"] == 'strict decoding error: duplicate field "spec.runStrategy"'
    assert body["details"]["causes"][0]["field"] == "spec.runStrategy"
    assert server.request("GET", f"{VM_NAMESPACE_PATH}/dup-strict")[0] == 404


def test_duplicate_json_keys_are_warned_about_under_warn(server: LimitsServer) -> None:
    status, body, headers = server.request(
        "POST", VM_NAMESPACE_PATH + "?fieldValidation=Warn", body=_duplicated_vm("dup-warn")
    )
    assert status == 201, body
    assert 'duplicate field \\"spec.runStrategy\\"' in headers.get("Warning", "")


def test_duplicate_keys_in_a_merge_patch_are_refused_under_strict(server: LimitsServer) -> None:
    assert server.request("POST", VM_NAMESPACE_PATH, body=vm("dup-patch"))[0] == 201
    status, body, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/dup-patch?fieldValidation=Strict",
        body='{"metadata":{"labels":{"a":"1","a":"2"}}}',
        content_type="application/merge-patch+json",
    )
    assert status == 400, body
    assert 'duplicate field "metadata.labels.a"' in body["message"]


def test_duplicate_yaml_keys_are_refused_under_strict(server: LimitsServer) -> None:
    document = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dup-yaml\n  name: other\n"
    status, body, _ = server.request(
        "POST", "/api/v1/namespaces?fieldValidation=Strict", body=document, content_type="application/yaml"
    )
    assert status == 400, body
    assert "strict decoding error: duplicate field" in body["message"]


def test_delete_with_a_malformed_precondition_resource_version_is_400(server: LimitsServer) -> None:
    assert server.request("POST", VM_NAMESPACE_PATH, body=vm("precondition"))[0] == 201
    status, body, _ = server.request(
        "DELETE", f"{VM_NAMESPACE_PATH}/precondition", body={"preconditions": {"resourceVersion": "abc"}}
    )
    assert status == 400, body
    assert body["kind"] == "Status"
    assert 'preconditions.resourceVersion: Invalid value: "abc"' in body["message"]
    assert server.request("GET", f"{VM_NAMESPACE_PATH}/precondition")[0] == 200


@pytest.mark.parametrize("value", [123, ["1"], {"a": 1}, True])
def test_delete_with_a_precondition_of_the_wrong_type_is_400(server: LimitsServer, value: Any) -> None:
    assert server.request("POST", VM_NAMESPACE_PATH, body=vm("typed-precondition"))[0] in (201, 409)
    status, body, _ = server.request(
        "DELETE",
        f"{VM_NAMESPACE_PATH}/typed-precondition",
        body={"preconditions": {"resourceVersion": value}},
    )
    assert status == 400, body


def test_delete_with_a_mismatching_precondition_is_409(server: LimitsServer) -> None:
    status, created, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("stale-precondition"))
    assert status == 201
    stale = str(int(created["metadata"]["resourceVersion"]) - 1)
    status, body, _ = server.request(
        "DELETE",
        f"{VM_NAMESPACE_PATH}/stale-precondition",
        body={"preconditions": {"resourceVersion": stale}},
    )
    assert status == 409, body
    assert body["reason"] == "Conflict"
    assert f"Precondition failed: ResourceVersion in precondition: {stale}" in body["message"]


def test_delete_with_a_matching_precondition_deletes(server: LimitsServer) -> None:
    status, _, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("good-precondition"))
    assert status == 201
    rv = server.settled(f"{VM_NAMESPACE_PATH}/good-precondition")["metadata"]["resourceVersion"]
    status, body, _ = server.request(
        "DELETE", f"{VM_NAMESPACE_PATH}/good-precondition", body={"preconditions": {"resourceVersion": rv}}
    )
    assert status == 200, body


def _get_line(server: LimitsServer, header: bytes) -> bytes:
    return b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n\r\n"


def _status_of(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body)


def test_a_nul_byte_in_a_header_is_a_400_status(server: LimitsServer) -> None:
    auth = f"Authorization: Bearer {server.token}\r\n".encode()
    line, status = _status_of(server.raw(_get_line(server, auth + b"X-Test: a\x00b")))
    assert b" 400 " in line
    assert status["kind"] == "Status"
    assert status["code"] == 400
    assert "Invalid header value char" in status["message"]


def test_a_nul_byte_in_the_authorization_header_is_a_400_status(server: LimitsServer) -> None:
    answer = server.raw(_get_line(server, f"Authorization: Bearer {server.token}\x00".encode()))
    line, status = _status_of(answer)
    assert b" 400 " in line
    assert status["reason"] == "BadRequest"


def test_a_malformed_request_is_logged_without_a_traceback(server: LimitsServer) -> None:
    server.raw(_get_line(server, b"X-Test: \x01"))
    log = server.log()
    assert "refused a malformed request" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\xfe", b"Accept: \xff", b"X-Test: \xc3"])
def test_a_header_that_is_not_utf8_is_a_400_status(server: LimitsServer, header: bytes) -> None:
    extra = (
        b"" if header.startswith(b"Authorization") else f"Authorization: Bearer {server.token}\r\n".encode()
    )
    answer = server.raw(_get_line(server, extra + header))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n", 1)[0], answer[:200]
    status = json.loads(body)
    assert status["kind"] == "Status"
    assert "not valid UTF-8" in status["message"]


def test_a_noop_merge_patch_keeps_the_resource_version_and_sends_no_event(server: LimitsServer) -> None:
    status, _, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("noop-patch", labels={"a": "b"}))
    assert status == 201
    rv = server.settled(f"{VM_NAMESPACE_PATH}/noop-patch")["metadata"]["resourceVersion"]
    status, patched, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/noop-patch",
        body={"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, patched
    assert patched["metadata"]["resourceVersion"] == rv
    events = _events_after(server, VM_NAMESPACE_PATH, rv)
    assert [e for e in events if e["object"]["metadata"].get("name") == "noop-patch"] == []


def test_a_noop_put_keeps_the_resource_version_and_sends_no_event(server: LimitsServer) -> None:
    status, _, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("noop-put"))
    assert status == 201
    created = server.settled(f"{VM_NAMESPACE_PATH}/noop-put")
    rv = created["metadata"]["resourceVersion"]
    status, updated, _ = server.request("PUT", f"{VM_NAMESPACE_PATH}/noop-put", body=created)
    assert status == 200, updated
    assert updated["metadata"]["resourceVersion"] == rv
    assert updated == created
    events = _events_after(server, VM_NAMESPACE_PATH, rv)
    assert [e for e in events if e["object"]["metadata"].get("name") == "noop-put"] == []


def test_a_noop_write_of_an_untyped_kind_keeps_the_resource_version(server: LimitsServer) -> None:
    status, node, _ = server.request("GET", "/api/v1/nodes/node01")
    assert status == 200
    status, updated, _ = server.request(
        "PATCH", "/api/v1/nodes/node01", body={}, content_type="application/merge-patch+json"
    )
    assert status == 200
    assert updated["metadata"]["resourceVersion"] == node["metadata"]["resourceVersion"]


def test_a_write_that_changes_something_still_bumps_the_resource_version(server: LimitsServer) -> None:
    status, created, _ = server.request("POST", VM_NAMESPACE_PATH, body=vm("real-change"))
    assert status == 201
    status, patched, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/real-change",
        body={"metadata": {"labels": {"changed": "yes"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
