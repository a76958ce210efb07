"""The official kubernetes Python client, and raw bad requests, against ``vmplane serve``.

Every bad request must get the Kubernetes ``Status`` for it and leave the store unchanged (its
revision, as a list reports it, does not move).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from test_api_support import CPU_HOTPLUG_VM, ApiServer, api_server

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(120)]
__all__ = ["api_server"]

GROUP, VERSION, PLURAL = "kubevirt.io", "v1", "virtualmachines"
VMS = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"


@pytest.fixture
def custom(api_server: ApiServer) -> Iterator[client.CustomObjectsApi]:
    api_client = config.new_client_from_config(config_file=str(api_server.kubeconfig))
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def _manifest(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(CPU_HOTPLUG_VM.format(name=name))
    return manifest


def _observed_by_controller(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    """The VM once the VM controller has written its status (its later writes would race a replace)."""
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        field_selector=f"metadata.name={name}",
        timeout_seconds=20,
    )
    for event in stream:
        obj: dict[str, Any] = event["object"]
        if obj.get("status", {}).get("printableStatus"):
            return obj
    raise AssertionError(f"the controller never wrote {name}'s status")


def test_custom_objects_crud(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _manifest("py-crud"))
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"]
    got = _observed_by_controller(custom, "py-crud")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    got["spec"]["runStrategy"] = "Always"
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-crud", got)
    assert replaced["metadata"]["generation"] == 2

    with pytest.raises(ApiException) as stale:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-crud", got)
    assert stale.value.status == 409
    assert "the object has been modified" in stale.value.body

    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "py-crud", {"metadata": {"labels": {"patched": "yes"}}}
    )
    assert patched["metadata"]["labels"]["patched"] == "yes"
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "py-crud", {"status": {"printableStatus": "Stopped"}}
    )
    assert status["status"]["printableStatus"] == "Stopped"
    assert status["metadata"]["generation"] == 2

    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, label_selector="patched=yes"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["py-crud"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-crud")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-crud")
    assert gone.value.status == 404


def test_paging_is_a_consistent_snapshot(custom: client.CustomObjectsApi) -> None:
    for index in range(5):
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _manifest(f"page-{index}"))
    first = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, limit=2)
    token = first["metadata"]["continue"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "page-4")
    names = [i["metadata"]["name"] for i in first["items"]]
    while token:
        page = custom.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, limit=2, _continue=token
        )
        names += [i["metadata"]["name"] for i in page["items"]]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(5)]
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)


def test_watch_stream(custom: client.CustomObjectsApi) -> None:
    start = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"][
        "resourceVersion"
    ]
    seen: list[tuple[str, str]] = []
    streamer = watch.Watch()

    def consume() -> None:
        for event in streamer.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=start,
            timeout_seconds=20,
            field_selector="metadata.name=py-watch",
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if event["type"] == "DELETED":
                streamer.stop()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _manifest("py-other"))
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _manifest("py-watch"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "py-watch", {"metadata": {"labels": {"watched": "yes"}}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-watch")
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py-other")
    thread.join(timeout=30)
    assert not thread.is_alive()
    # The VM controller's status writes add MODIFIED events of their own; fold each run of them.
    folded = [event for i, event in enumerate(seen) if i == 0 or event != seen[i - 1]]
    assert folded == [("ADDED", "py-watch"), ("MODIFIED", "py-watch"), ("DELETED", "py-watch")]


BAD_REQUESTS = [
    pytest.param("POST", VMS, b"{not json", "application/json", 400, "BadRequest", id="malformed-json"),
    pytest.param("POST", VMS, b"a: [b", "application/yaml", 400, "BadRequest", id="malformed-yaml"),
    pytest.param("POST", VMS, b"[1, 2]", "application/json", 400, "BadRequest", id="not-an-object"),
    pytest.param(
        "POST",
        VMS,
        {"apiVersion": "v1", "kind": "VirtualMachine", "metadata": {"name": "x"}},
        "application/json",
        400,
        "BadRequest",
        id="wrong-api-version",
    ),
    pytest.param(
        "POST",
        VMS,
        {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "x"}},
        "application/json",
        400,
        "BadRequest",
        id="wrong-kind",
    ),
    pytest.param(
        "POST",
        VMS,
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "Bad_Name"}},
        "application/json",
        422,
        "Invalid",
        id="invalid-name",
    ),
    pytest.param(
        "POST",
        VMS,
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {}},
        "application/json",
        422,
        "Invalid",
        id="missing-name",
    ),
    pytest.param(
        "PUT",
        f"{VMS}/other",
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"}},
        "application/json",
        400,
        "BadRequest",
        id="name-mismatch",
    ),
    pytest.param(
        "POST",
        "/apis/kubevirt.io/v1/namespaces/nowhere/virtualmachines",
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"}},
        "application/json",
        404,
        "NotFound",
        id="missing-namespace",
    ),
    pytest.param(
        "POST",
        VMS,
        b'{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"big"},"spec":{"x":"'
        + b"a" * (3 * 1024 * 1024)
        + b'"}}',
        "application/json",
        413,
        "RequestEntityTooLarge",
        id="too-large",
    ),
    pytest.param(
        "PATCH",
        f"{VMS}/absent",
        {"spec": {}},
        "application/merge-patch+json",
        404,
        "NotFound",
        id="patch-missing",
    ),
    pytest.param(
        "PATCH", f"{VMS}/fixed", b"{", "application/merge-patch+json", 400, "BadRequest", id="patch-malformed"
    ),
    pytest.param(
        "PATCH",
        f"{VMS}/fixed",
        {"spec": {}},
        "application/strategic-merge-patch+json",
        415,
        "UnsupportedMediaType",
        id="patch-strategic",
    ),
    pytest.param(
        "PATCH",
        f"{VMS}/fixed",
        [{"op": "test", "path": "/spec/runStrategy", "value": "Nope"}],
        "application/json-patch+json",
        422,
        "Invalid",
        id="patch-test-fails",
    ),
    pytest.param(
        "PATCH",
        f"{VMS}/fixed",
        {"metadata": {"resourceVersion": "1"}},
        "application/merge-patch+json",
        409,
        "Conflict",
        id="patch-stale-version",
    ),
    pytest.param("GET", f"{VMS}?labelSelector=a%20in%20(", None, "", 400, "BadRequest", id="bad-selector"),
    pytest.param(
        "GET", f"{VMS}?fieldSelector=spec.x%3Dy", None, "", 400, "BadRequest", id="bad-field-selector"
    ),
    pytest.param("GET", f"{VMS}/absent", None, "", 404, "NotFound", id="get-missing"),
    pytest.param("GET", "/apis/kubevirt.io/v1/nothings", None, "", 404, "NotFound", id="unknown-resource"),
    pytest.param("PUT", VMS, {}, "application/json", 405, "MethodNotAllowed", id="put-collection"),
    pytest.param("POST", f"{VMS}?dryRun=Some", {}, "application/json", 400, "BadRequest", id="bad-dry-run"),
]


@pytest.fixture(scope="module")
def fixed_vm(api_server: ApiServer) -> None:
    api_server.kubectl("apply", "-f", "-", stdin=CPU_HOTPLUG_VM.format(name="fixed"))
    # Settled before the tests compare revisions: the VM controller writes the halted VM's status.
    api_server.kubectl(
        "wait", "vm", "fixed", "--for=jsonpath={.status.printableStatus}=Stopped", "--timeout=60s", timeout=90
    )


@pytest.mark.usefixtures("fixed_vm")
@pytest.mark.parametrize(("method", "path", "body", "content_type", "code", "reason"), BAD_REQUESTS)
def test_bad_request_gets_status_and_changes_nothing(
    api_server: ApiServer, method: str, path: str, body: Any, content_type: str, code: int, reason: str
) -> None:
    before = api_server.revision()
    status, returned, _ = api_server.request(method, path, body=body, content_type=content_type)
    assert (status, returned.get("kind"), returned.get("reason"), returned.get("code")) == (
        code,
        "Status",
        reason,
        code,
    ), returned
    assert api_server.revision() == before


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["missing", "wrong"])
def test_token_required(api_server: ApiServer, token: str) -> None:
    before = api_server.revision()
    status, body, _headers = api_server.request("POST", VMS, body=_manifest("intruder"), token=token)
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert api_server.revision() == before


def test_dry_run_create_returns_server_fields_and_stores_nothing(api_server: ApiServer) -> None:
    before = api_server.revision()
    status, body, _ = api_server.request("POST", f"{VMS}?dryRun=All", body=_manifest("dry"))
    assert status == 201
    assert body["metadata"]["uid"]
    assert body["metadata"]["generation"] == 1
    assert api_server.revision() == before
    assert api_server.request("GET", f"{VMS}/dry")[0] == 404


def test_table_response(api_server: ApiServer) -> None:
    status, body, _ = api_server.request(
        "GET", VMS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    )
    assert status == 200
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Age", "Status", "Ready"]


def test_aggregated_discovery(api_server: ApiServer) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, body, headers = api_server.request("GET", "/apis", headers={"Accept": accept})
    assert status == 200
    assert headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {item["metadata"]["name"] for item in body["items"]}
    assert {"kubevirt.io", "apps"} <= groups
