"""The manifests of KubeVirt's user guide (``tests/data/upstream/kubevirt-user-guide``) against
``vmplane serve``; a module of its own beside ``test_upstream_examples.py`` to keep each under a minute.

Every file ends one of three ways, decided from the file itself, never from a list of outcomes:

* all its kinds are unserved: ``kubectl apply`` refuses each with ``no matches for kind "X"`` (one
  kubectl run for all of these files; kubectl reports each file's refusal on its own line);
* all its kinds are served: each object is created as ``kubectl create`` would (``POST`` to its
  collection with ``fieldValidation=Strict``; the KubeVirt object and namespaces, which exist
  already, applied server-side with ``dryRun=All``) and is either refused with a message naming
  the field (Pods, which vmplane serves read-only for ``kubectl describe node``, answer 405), or
  accepted, VMIs and VMs that ask to run then reaching Running or reporting why not as upstream
  does (a VMI Failed with its reason or not scheduled with the scheduler's message, a VM in
  CrashLoopBackOff);
* a mix: ``kubectl apply`` of the file names the unserved kind, and what it did create is removed.

The counts are in the README (``test_counts_match_the_readme``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_api_support import ApiServer, start_server, stop_server

from vmplane.api.kubevirt import KubeVirtConfiguration
from vmplane.apiserver.registry import ResourceType
from vmplane.apiserver.typed_kinds import typed_registry
from vmplane.store.base import JsonObject

pytestmark = [pytest.mark.integration, pytest.mark.requires("kubectl"), pytest.mark.timeout(300)]

GUIDE = Path(__file__).resolve().parents[1] / "data" / "upstream" / "kubevirt-user-guide"
FILES = sorted(GUIDE.glob("*.yaml"))


class _NoCluster:
    """Admission's cluster view, which only the kinds' listing here needs: none of it is read."""

    def configuration(self) -> KubeVirtConfiguration:
        return KubeVirtConfiguration()

    def vmi(self, namespace: str, name: str) -> JsonObject | None:
        return None


# What `vmplane serve` serves: its typed registry, instance types and MaintenanceWindow included.
SERVED: dict[tuple[str, str], ResourceType] = {
    (t.api_version, t.kind): t for t in typed_registry(_NoCluster())
}
# A refusal names a field when it quotes an unknown one or gives a path into the object.
_NAMES_A_FIELD = re.compile(r'unknown field "|\b(spec|metadata)(\.[A-Za-z]\w*|\[\d+\])+')
_RUNNING_STRATEGIES = ("Always", "RerunOnFailure")
# The README's counts (see the module docstring).
ACCEPTED, NOT_RUNNING, REFUSED_BY_KIND, REFUSED_BY_FIELD = 54, 7, 108, 55


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _unserved(document: dict[str, Any]) -> bool:
    return (document["apiVersion"], document["kind"]) not in SERVED


ALL_UNSERVED = [p for p in FILES if all(_unserved(d) for d in _documents(p))]
ALL_SERVED = [p for p in FILES if not any(_unserved(d) for d in _documents(p))]
MIXED = [p for p in FILES if p not in ALL_UNSERVED and p not in ALL_SERVED]
OUTCOMES: dict[str, str] = {}  # file name -> "accepted" / "kind" / "field", for the counts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = start_server(tmp_path_factory.mktemp("vmplane-guide"))
    try:
        namespaces = {d["metadata"].get("namespace") for p in FILES for d in _documents(p)}
        for namespace in sorted(n for n in namespaces if isinstance(n, str) and "$" not in n):
            running.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
        yield running
    finally:
        assert stop_server(running) == 0


@pytest.fixture(scope="module")
def unserved_refusals(server: ApiServer) -> dict[str, str]:
    """The line kubectl printed about each all-unserved file, from one ``kubectl apply``."""
    arguments = [a for p in ALL_UNSERVED for a in ("-f", str(p))]
    applied = server.kubectl("apply", *arguments, check=False)
    assert applied.returncode != 0
    lines = applied.stderr.splitlines()
    return {p.name: next((line for line in lines if f'from "{p}"' in line), "") for p in ALL_UNSERVED}


def _collection(resource_type: ResourceType, namespace: str) -> str:
    root = f"/apis/{resource_type.group}/{resource_type.version}" if resource_type.group else "/api/v1"
    if resource_type.namespaced:
        root += f"/namespaces/{namespace}"
    return f"{root}/{resource_type.plural}"


def _wait(condition: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _vmi_phase(server: ApiServer, namespace: str, name: str) -> str:
    status, body, _ = server.request(
        "GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}"
    )
    return str((body.get("status") or {}).get("phase", "")) if status == 200 else ""


def _get(server: ApiServer, document: dict[str, Any], plural: str) -> dict[str, Any] | None:
    namespace, name = document["metadata"].get("namespace") or "default", document["metadata"]["name"]
    status, body, _ = server.request("GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/{plural}/{name}")
    return body if status == 200 else None


def _vmi_settled(server: ApiServer, document: dict[str, Any]) -> str:
    """ "Running"; or, for a VMI that will not run, the state it reports as upstream does: Failed with
    its reason, or not scheduled with the scheduler's; "" while it is on its way."""
    vmi = _get(server, document, "virtualmachineinstances") or {}
    status = vmi.get("status") or {}
    if status.get("phase") in ("Running", "Failed"):
        assert status["phase"] == "Running" or status.get("reason"), status
        return str(status["phase"])
    unschedulable = [c for c in status.get("conditions") or [] if c.get("reason") == "Unschedulable"]
    return f"Unschedulable: {unschedulable[0].get('message')}" if unschedulable else ""


def _vm_settled(server: ApiServer, document: dict[str, Any]) -> str:
    """ "Running" once the VM's VMI runs; CrashLoopBackOff for a VM whose VMIs fail to start."""
    vmi = _get(server, document, "virtualmachineinstances") or {}
    if (vmi.get("status") or {}).get("phase") == "Running":
        return "Running"
    vm = _get(server, document, "virtualmachines") or {}
    printable = (vm.get("status") or {}).get("printableStatus")
    return "CrashLoopBackOff" if printable == "CrashLoopBackOff" else ""


def _wants_to_run(vm: dict[str, Any]) -> bool:
    spec = vm.get("spec") or {}
    return spec.get("running") is True or spec.get("runStrategy") in _RUNNING_STRATEGIES


def _create(server: ApiServer, document: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    resource_type = SERVED[(document["apiVersion"], document["kind"])]
    namespace = document["metadata"].get("namespace") or "default"
    path = _collection(resource_type, namespace)
    item = f"{path}/{document['metadata']['name']}"
    if resource_type.kind in ("KubeVirt", "Namespace"):
        # Both exist already (there is one KubeVirt per cluster; the namespaces the guide uses are
        # made by the fixture): apply as `kubectl apply --server-side --dry-run=server` would.
        query = "?dryRun=All&fieldManager=kubectl&force=true&fieldValidation=Strict"
        status, body, _ = server.request(
            "PATCH", item + query, body=yaml.safe_dump(document), content_type="application/apply-patch+yaml"
        )
        return (201 if status == 200 else status), body, ""
    status, body, _ = server.request("POST", path + "?fieldValidation=Strict", body=document)  # as kubectl
    return status, body, item if status == 201 else ""


def _remove(server: ApiServer, paths: list[str]) -> None:
    for path in paths:
        server.request("DELETE", path)
    for path in paths:
        assert _wait(lambda p=path: server.request("GET", p)[0] == 404), f"{path} was not deleted"


@pytest.mark.parametrize("path", ALL_UNSERVED, ids=[p.name for p in ALL_UNSERVED])
def test_a_manifest_of_unserved_kinds_is_refused_naming_the_kind(
    unserved_refusals: dict[str, str], path: Path
) -> None:
    line = unserved_refusals[path.name]
    assert any(f'no matches for kind "{d["kind"]}"' in line for d in _documents(path)), line
    OUTCOMES[path.name] = "kind"


@pytest.mark.parametrize("path", ALL_SERVED, ids=[p.name for p in ALL_SERVED])
def test_a_manifest_of_served_kinds_runs_or_is_refused_naming_the_field(
    server: ApiServer, path: Path
) -> None:
    created: list[str] = []
    try:
        for document in _documents(path):
            status, body, location = _create(server, document)
            if status != 201:
                if document["kind"] == "Pod":
                    assert status == 405  # served read-only, for kubectl describe node
                    OUTCOMES[path.name] = "kind"
                else:
                    assert 400 <= status < 500, body
                    assert _NAMES_A_FIELD.search(body.get("message", "")), body
                    OUTCOMES[path.name] = "field"
                return
            if location:
                created.append(location)
        OUTCOMES[path.name] = "accepted"
        for document in _documents(path):
            if document["kind"] == "VirtualMachineInstance":
                state = _wait(lambda d=document: _vmi_settled(server, d))
            elif document["kind"] == "VirtualMachine" and _wants_to_run(document):
                state = _wait(lambda d=document: _vm_settled(server, d))
            else:
                continue
            assert state, f"{document['kind']} {document['metadata']['name']} did not settle"
            if state != "Running":
                OUTCOMES[path.name] = "accepted, not running"
    finally:
        _remove(server, list(reversed(created)))


@pytest.mark.parametrize("path", MIXED, ids=[p.name for p in MIXED])
def test_a_manifest_mixing_kinds_is_refused_naming_the_unserved_kind(server: ApiServer, path: Path) -> None:
    applied = server.kubectl("apply", "-f", str(path), check=False)
    try:
        assert applied.returncode != 0
        kinds = [d["kind"] for d in _documents(path) if _unserved(d)]
        assert any(f'no matches for kind "{kind}"' in applied.stderr for kind in kinds), applied.stderr
        OUTCOMES[path.name] = "kind"
    finally:
        server.kubectl(
            "delete", "-f", str(path), "--ignore-not-found", "--wait=true", "--timeout=60s", check=False
        )


def test_counts_match_the_readme() -> None:
    assert len(OUTCOMES) == len(FILES), "the counts need every test of this module to have run"
    results = list(OUTCOMES.values())
    counted = (
        results.count("accepted"),
        results.count("accepted, not running"),
        results.count("kind"),
        results.count("field"),
    )
    assert counted == (ACCEPTED, NOT_RUNNING, REFUSED_BY_KIND, REFUSED_BY_FIELD), sorted(OUTCOMES.items())
