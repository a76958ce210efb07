"""Issue 8, Deliver 4: every decoder refuses nesting past its limit with a 400 Status, never a 500.

Against a real ``vmplane serve`` on 127.0.0.1; each repro of the issue as written, then variants.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from limits_support import VM_NAMESPACE_PATH, LimitsServer, nested_json, nested_yaml, serving, vm

from vmplane.apiserver.decoders import MAX_DEPTH

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    with serving(tmp_path_factory.mktemp("decoding")) as running:
        status, _, _ = running.request("POST", VM_NAMESPACE_PATH, body=vm("target"))
        assert status == 201
        yield running


def _deep_vm_json(depth: int) -> str:
    body = json.dumps(vm("deep"))
    return body[:-1] + ',"extra":' + nested_json(depth) + "}"


def _assert_depth_refused(status: int, body: dict[str, object]) -> None:
    assert status == 400, body
    assert body["kind"] == "Status"
    assert body["reason"] == "BadRequest"
    assert f"exceeded max depth of {MAX_DEPTH}" in str(body["message"])


def test_json_body_nested_10000_deep_is_400(server: LimitsServer) -> None:
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=_deep_vm_json(10_000))
    _assert_depth_refused(status, body)


def test_json_body_nested_past_the_limit_is_400(server: LimitsServer) -> None:
    status, body, _ = server.request("POST", VM_NAMESPACE_PATH, body=_deep_vm_json(MAX_DEPTH + 1))
    _assert_depth_refused(status, body)


def test_yaml_body_nested_10000_deep_is_400_and_cheap(server: LimitsServer) -> None:
    document = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: deep}\nspec: "
    started = time.monotonic()
    status, body, _ = server.request(
        "POST", VM_NAMESPACE_PATH, body=document + nested_yaml(10_000), content_type="application/yaml"
    )
    elapsed = time.monotonic() - started
    _assert_depth_refused(status, body)
    # Composing the whole document took 1.2 s of the event loop; refused while composing, it is cheap.
    assert elapsed < 0.25, f"refusing a deep YAML body took {elapsed:.2f} s"


def test_yaml_alias_bomb_is_refused(server: LimitsServer) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    document = "\n".join(lines) + "\napiVersion: v1\nkind: Namespace\nmetadata: {name: bomb}\n"
    status, body, _ = server.request(
        "POST", "/api/v1/namespaces", body=document, content_type="application/yaml"
    )
    _assert_depth_refused(status, body)


@pytest.mark.parametrize("depth", [900, 10_000])
def test_merge_patch_nested_deep_is_400(server: LimitsServer, depth: int) -> None:
    status, body, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/target",
        body='{"metadata":{"annotations":{}},"spec":' + nested_json(depth) + "}",
        content_type="application/merge-patch+json",
    )
    _assert_depth_refused(status, body)


@pytest.mark.parametrize("depth", [900, 10_000])
def test_apply_patch_nested_deep_is_400(server: LimitsServer, depth: int) -> None:
    document = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: target}\nspec: "
    status, body, _ = server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/target?fieldManager=test",
        body=document + nested_yaml(depth),
        content_type="application/apply-patch+yaml",
    )
    _assert_depth_refused(status, body)


def test_json_patch_with_a_deep_value_is_400(server: LimitsServer) -> None:
    patch = '[{"op":"add","path":"/spec/extra","value":' + nested_json(900) + "}]"
    status, body, _ = server.request(
        "PATCH", f"{VM_NAMESPACE_PATH}/target", body=patch, content_type="application/json-patch+json"
    )
    _assert_depth_refused(status, body)


def test_strategic_merge_patch_nested_deep_is_400(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "PATCH",
        "/api/v1/namespaces/default",
        body='{"spec":' + nested_json(900) + "}",
        content_type="application/strategic-merge-patch+json",
    )
    _assert_depth_refused(status, body)


def test_patches_cannot_build_nesting_past_the_limit_step_by_step(server: LimitsServer) -> None:
    path = "/spec/extra"
    status, body, _ = server.request(
        "PATCH",
        "/api/v1/nodes/node01",
        body=json.dumps([{"op": "add", "path": path, "value": json.loads(nested_json(MAX_DEPTH - 5))}]),
        content_type="application/json-patch+json",
    )
    assert status == 200, body
    deeper = path + "/a" * (MAX_DEPTH - 8)
    status, body, _ = server.request(
        "PATCH",
        "/api/v1/nodes/node01",
        body=json.dumps([{"op": "add", "path": deeper + "/b", "value": json.loads(nested_json(20))}]),
        content_type="application/json-patch+json",
    )
    _assert_depth_refused(status, body)


def test_delete_options_nested_deep_is_400(server: LimitsServer) -> None:
    status, body, _ = server.request(
        "DELETE", f"{VM_NAMESPACE_PATH}/target", body='{"preconditions":' + nested_json(10_000) + "}"
    )
    _assert_depth_refused(status, body)
    status, _, _ = server.request("GET", f"{VM_NAMESPACE_PATH}/target")
    assert status == 200


def test_nesting_within_the_limit_is_accepted(server: LimitsServer) -> None:
    node_patch = {"metadata": {"annotations": {"x": "y"}}, "spec": json.loads(nested_json(MAX_DEPTH - 10))}
    status, body, _ = server.request(
        "PATCH", "/api/v1/nodes/node01", body=node_patch, content_type="application/merge-patch+json"
    )
    assert status == 200, body


def test_a_refused_body_leaves_the_stored_object_as_it_was(server: LimitsServer) -> None:
    _, before, _ = server.request("GET", f"{VM_NAMESPACE_PATH}/target")
    server.request(
        "PATCH",
        f"{VM_NAMESPACE_PATH}/target",
        body='{"spec":' + nested_json(900) + "}",
        content_type="application/merge-patch+json",
    )
    _, after, _ = server.request("GET", f"{VM_NAMESPACE_PATH}/target")
    assert after == before


SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines"


def test_subresource_body_nested_10000_deep_is_400(server: LimitsServer) -> None:
    status, body, _ = server.request("PUT", f"{SUBRESOURCES}/target/stop", body=nested_json(10_000))
    _assert_depth_refused(status, body)


@pytest.mark.parametrize(
    "path", [VM_NAMESPACE_PATH, f"{SUBRESOURCES}/target/stop"], ids=["create", "subresource"]
)
def test_a_body_that_is_not_utf8_is_400(server: LimitsServer, path: str) -> None:
    status, body, _ = server.request("PUT" if "stop" in path else "POST", path, body=b'{"a": "\xff"}')
    assert status == 400, body
    assert body["kind"] == "Status"
