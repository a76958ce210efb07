"""Admission refuses spec values that would reach a host path or a QEMU option, through the real API.

One control plane (the API on 127.0.0.1, simulated guests) serves the module; each test sends the
issue's repro (or a variant) with the kubernetes client and expects a 422 ``Invalid`` Status whose
causes name the field, and checks that nothing was stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from rollout_support import InProcessServer
from spec_checks_support import NS, vm_manifest, vmi_manifest, vmi_spec

pytestmark = pytest.mark.integration

GROUP, VERSION = "kubevirt.io", "v1"
TEMPLATE = "spec.template.spec"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.CustomObjectsApi]:
    server = InProcessServer(data_dir=tmp_path_factory.mktemp("spec-admission"))
    server.start()
    try:
        yield client.CustomObjectsApi(server.api())
    finally:
        server.stop()


def refusal(api: client.CustomObjectsApi, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    """The Status of a refused create; asserts it was a 422 Invalid and that nothing was stored."""
    with pytest.raises(client.ApiException) as caught:
        api.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)
    status: dict[str, Any] = json.loads(caught.value.body)
    assert (caught.value.status, status["reason"]) == (422, "Invalid"), status
    with pytest.raises(client.ApiException) as missing:
        api.get_namespaced_custom_object(GROUP, VERSION, NS, plural, body["metadata"]["name"])
    assert missing.value.status == 404
    return status


def fields(status: dict[str, Any]) -> list[str]:
    return [c["field"] for c in status["details"]["causes"]]


def message(status: dict[str, Any], field: str) -> str:
    return next(c["message"] for c in status["details"]["causes"] if c["field"] == field)


def with_cpu(**cpu: Any) -> dict[str, Any]:
    return vmi_spec(domain={"cpu": cpu})


@pytest.mark.parametrize(
    ("cpu", "field"),
    [
        ({"sockets": 9223372036854775808}, "sockets"),
        ({"sockets": True}, "sockets"),
        ({"sockets": "2"}, "sockets"),
        ({"sockets": -1}, "sockets"),
        ({"sockets": 4294967296}, "sockets"),
        ({"cores": True}, "cores"),
        ({"threads": 9223372036854775808}, "threads"),
        ({"maxSockets": False}, "maxSockets"),
        ({"cores": 1.5}, "cores"),
    ],
    ids=[
        "sockets-int64-overflow",
        "sockets-bool",
        "sockets-string",
        "sockets-negative",
        "sockets-uint32-overflow",
        "cores-bool",
        "threads-overflow",
        "max-sockets-bool",
        "cores-float",
    ],
)
def test_cpu_topology_is_a_strict_uint32(
    api: client.CustomObjectsApi, cpu: dict[str, Any], field: str
) -> None:
    status = refusal(api, "virtualmachines", vm_manifest("cpu", with_cpu(**cpu)))
    assert fields(status) == [f"{TEMPLATE}.domain.cpu.{field}"]


@pytest.mark.parametrize(
    ("memory", "field"),
    [
        ({"memory": {"guest": "-1Gi"}}, "memory.guest"),
        ({"memory": {"guest": "1Gi", "maxGuest": "-4Gi"}}, "memory.maxGuest"),
        (
            {"memory": {"guest": "1Gi"}, "resources": {"requests": {"memory": "-1Gi"}}},
            "resources.requests.memory",
        ),
    ],
    ids=["guest", "max-guest", "request"],
)
def test_negative_memory_is_refused(api: client.CustomObjectsApi, memory: dict[str, Any], field: str) -> None:
    status = refusal(api, "virtualmachines", vm_manifest("mem", vmi_spec(domain=memory)))
    path = f"{TEMPLATE}.domain.{field}"
    assert path in fields(status)
    assert message(status, path).endswith("must be greater than or equal to 0.")


def test_firmware_uuid_that_is_no_uuid_is_refused(api: client.CustomObjectsApi) -> None:
    spec = vmi_spec(domain={"firmware": {"uuid": "x,y"}})
    assert fields(refusal(api, "virtualmachines", vm_manifest("uuid", spec))) == [
        f"{TEMPLATE}.domain.firmware.uuid"
    ]


@pytest.mark.parametrize(
    "machine",
    ["pc-q35-7.2,initrd=/etc/shadow", "q35,firmware=/x", "pc-i440fx-7.2", "microvm", "q35 "],
    ids=["initrd-option", "firmware-option", "i440fx", "microvm", "trailing-space"],
)
def test_machine_type_outside_the_qemu_allowlist_is_refused(
    api: client.CustomObjectsApi, machine: str
) -> None:
    status = refusal(
        api, "virtualmachines", vm_manifest("machine", vmi_spec(domain={"machine": {"type": machine}}))
    )
    field = f"{TEMPLATE}.domain.machine.type"
    assert fields(status) == [field]
    # KubeVirt's validateEmulatedMachine message.
    assert message(status, field).startswith(f"{field} is not supported: {machine} (allowed values: [q35")


def test_machine_type_qemu_lists_is_admitted(api: client.CustomObjectsApi) -> None:
    body = vm_manifest("machine-ok", vmi_spec(domain={"machine": {"type": "pc-q35-7.2"}}))
    created = api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", body, dry_run="All")
    assert created["spec"]["template"]["spec"]["domain"]["machine"] == {"type": "pc-q35-7.2"}


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        (
            {"persistentVolumeClaim": {"claimName": "../../../../tmp/x/pwn"}},
            "persistentVolumeClaim.claimName",
        ),
        ({"persistentVolumeClaim": {"claimName": "Disk"}}, "persistentVolumeClaim.claimName"),
        ({"dataVolume": {"name": "../other/claims/secret"}}, "dataVolume.name"),
        ({"containerDisk": {"image": "../../etc"}}, "containerDisk.image"),
        ({"containerDisk": {"image": "/etc/passwd"}}, "containerDisk.image"),
        ({"containerDisk": {"image": "quay.io/a/b:1", "path": "../../x"}}, "containerDisk.path"),
        ({"containerDisk": {"image": "quay.io/a/b:1", "path": "/disk/../../../x"}}, "containerDisk.path"),
    ],
    ids=[
        "claim-climbs",
        "claim-upper",
        "data-volume-climbs",
        "image-climbs",
        "image-absolute",
        "path-relative",
        "path-climbs",
    ],
)
def test_volume_source_leaving_its_directory_is_refused(
    api: client.CustomObjectsApi, volume: dict[str, Any], field: str
) -> None:
    spec = vmi_spec(volumes=[{"name": "d", **volume}])
    assert fields(refusal(api, "virtualmachines", vm_manifest("vol", spec))) == [
        f"{TEMPLATE}.volumes[0].{field}"
    ]


def test_volume_named_dot_dot_is_refused_on_the_disk_and_the_volume(api: client.CustomObjectsApi) -> None:
    spec = vmi_spec(volumes=[{"name": "../x", "emptyDisk": {"capacity": "1Mi"}}])
    status = refusal(api, "virtualmachines", vm_manifest("name", spec))
    assert set(fields(status)) == {f"{TEMPLATE}.domain.devices.disks[0].name", f"{TEMPLATE}.volumes[0].name"}
    # IsDNS1123Label's message, as KubeVirt reports it.
    assert message(status, f"{TEMPLATE}.volumes[0].name").startswith(
        "a lowercase RFC 1123 label must consist"
    )


def test_kernel_path_leaving_the_image_is_refused(api: client.CustomObjectsApi) -> None:
    kernel = {"container": {"image": "quay.io/a/k:1", "kernelPath": "/../../etc/shadow"}}
    status = refusal(
        api, "virtualmachines", vm_manifest("kernel", vmi_spec(domain={"firmware": {"kernelBoot": kernel}}))
    )
    field = f"{TEMPLATE}.domain.firmware.kernelBoot.container.kernelPath"
    assert message(status, field) == f"{field} must be an absolute path to a file without relative components"


def test_interface_name_with_option_syntax_is_refused(api: client.CustomObjectsApi) -> None:
    spec = vmi_spec(networks=[{"name": "a,b", "pod": {}}])
    spec["domain"]["devices"]["interfaces"] = [{"name": "a,b", "masquerade": {}}]
    status = refusal(api, "virtualmachines", vm_manifest("nic", spec))
    assert set(fields(status)) == {
        f"{TEMPLATE}.domain.devices.interfaces[0].name",
        f"{TEMPLATE}.networks[0].name",
    }


def test_disk_serial_with_option_syntax_is_refused(api: client.CustomObjectsApi) -> None:
    spec = vmi_spec(disks=[{"name": "root", "serial": "x,drive=y"}])
    status = refusal(api, "virtualmachines", vm_manifest("serial", spec))
    assert fields(status) == [f"{TEMPLATE}.domain.devices.disks[0].serial"]


def test_cpu_model_with_option_syntax_is_refused(api: client.CustomObjectsApi) -> None:
    status = refusal(api, "virtualmachines", vm_manifest("model", with_cpu(model="max,+vmx")))
    assert fields(status) == [f"{TEMPLATE}.domain.cpu.model"]


def test_hostname_that_is_no_dns_label_is_refused(api: client.CustomObjectsApi) -> None:
    status = refusal(api, "virtualmachines", vm_manifest("host", vmi_spec(hostname="x\ninstance-id: y")))
    assert fields(status) == [f"{TEMPLATE}.hostname"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            vmi_spec(
                volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "../../../../tmp/x/pwn"}}]
            ),
            "spec.volumes[0].persistentVolumeClaim.claimName",
        ),
        (vmi_spec(domain={"machine": {"type": "q35,firmware=/x"}}), "spec.domain.machine.type"),
        (vmi_spec(domain={"cpu": {"sockets": True}}), "spec.domain.cpu.sockets"),
    ],
    ids=["claim", "machine", "sockets"],
)
def test_vmis_are_admitted_by_the_same_rules(
    api: client.CustomObjectsApi, spec: dict[str, Any], field: str
) -> None:
    assert fields(refusal(api, "virtualmachineinstances", vmi_manifest("direct", spec))) == [field]
