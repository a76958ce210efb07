"""The ``subresources.kubevirt.io/v1`` paths in the OpenAPI documents, as KubeVirt's swagger lists them.

KubeVirt's virt-api documents its subresources (``v1Start``, ``v1Console``, ...) beside the kinds; a
client generated from the document, or a user reading it, finds there what vmplane serves. This is
the table of those paths; a unit test holds it to the routes :mod:`vmplane.apiserver.subresources`,
:mod:`vmplane.apiserver.console`, :mod:`vmplane.apiserver.streams`,
:mod:`vmplane.apiserver.guest_subresources` and :mod:`vmplane.apiserver.volume_subresources` register.
Port-forward (``portforward/{port}``) is a websocket per port, listed by neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from vmplane.store.base import JsonObject

__all__ = ["GROUP_VERSION_PATH", "SUBRESOURCES", "Subresource", "subresource_paths"]

GROUP_VERSION_PATH: Final = "apis/subresources.kubevirt.io/v1"
_ROOT = f"/{GROUP_VERSION_PATH}/namespaces/{{namespace}}"


@dataclass(frozen=True, slots=True)
class Subresource:
    resource: str
    action: str
    method: Literal["get", "put"]
    operation_id: str
    description: str
    status: int  # the success status vmplane answers with
    returns_vm: bool = False

    @property
    def path(self) -> str:
        return f"{_ROOT}/{self.resource}/{{name}}/{self.action}"


SUBRESOURCES: Final = (
    Subresource(
        "virtualmachines",
        "start",
        "put",
        "v1Start",
        "Start a VirtualMachine object: its run strategy or a start request is recorded, "
        "the VM controller acts on it.",
        202,
    ),
    Subresource(
        "virtualmachines",
        "stop",
        "put",
        "v1Stop",
        "Stop a VirtualMachine object: its run strategy or a stop request is recorded, "
        "the VM controller acts on it.",
        202,
    ),
    Subresource(
        "virtualmachines",
        "restart",
        "put",
        "v1Restart",
        "Restart a VirtualMachine object: a stop and a start request are recorded, "
        "the VM controller acts on them.",
        202,
    ),
    Subresource(
        "virtualmachines",
        "migrate",
        "put",
        "v1Migrate",
        "Migrate a running VirtualMachine to another node: a VirtualMachineInstanceMigration is "
        'created (body MigrateOptions: {"addedNodeSelector": {...}, "dryRun": ["All"]}).',
        202,
    ),
    Subresource(
        "virtualmachines",
        "revert",
        "put",
        "v1Revert",
        "Write the running values back into the VirtualMachine's template for the given pending paths "
        '(body {"paths": [...]}; all pending paths when none are given) and return the VirtualMachine. '
        "A vmplane extension.",
        200,
        returns_vm=True,
    ),
    Subresource(
        "virtualmachineinstances",
        "console",
        "get",
        "v1Console",
        "The serial console of the specified VirtualMachineInstance: an interactive websocket "
        "(subprotocol plain.kubevirt.io), or its log as text for a plain GET.",
        200,
    ),
    Subresource(
        "virtualmachineinstances",
        "vnc",
        "get",
        "v1VNC",
        "Open a websocket to the VirtualMachineInstance's VNC display (RFB, subprotocol plain.kubevirt.io).",
        200,
    ),
    Subresource(
        "virtualmachineinstances",
        "pause",
        "put",
        "v1Pause",
        "Pause the VirtualMachineInstance's vCPUs; its condition Paused is set once the guest is paused.",
        202,
    ),
    Subresource(
        "virtualmachineinstances",
        "unpause",
        "put",
        "v1Unpause",
        "Resume a paused VirtualMachineInstance.",
        202,
    ),
    Subresource(
        "virtualmachineinstances",
        "reset",
        "put",
        "v1Reset",
        "Hard-reset the VirtualMachineInstance's guest, keeping the same VirtualMachineInstance.",
        202,
    ),
    Subresource(
        "virtualmachineinstances",
        "softreboot",
        "put",
        "v1SoftReboot",
        "Ask the VirtualMachineInstance's guest to reboot itself (ctrl-alt-delete without a guest agent).",
        202,
    ),
    *(
        Subresource(
            resource,
            action,
            "put",
            operation_id,
            description,
            202,
        )
        for resource in ("virtualmachines", "virtualmachineinstances")
        for action, operation_id, description in (
            (
                "addvolume",
                "v1AddVolume" if resource == "virtualmachineinstances" else "v1VMAddVolume",
                "Hot-plug a volume (body: AddVolumeOptions, a persistentVolumeClaim or dataVolume source) "
                + (
                    "into the running VirtualMachineInstance."
                    if resource == "virtualmachineinstances"
                    else "into the VirtualMachine's template and its running VirtualMachineInstance."
                ),
            ),
            (
                "removevolume",
                "v1RemoveVolume" if resource == "virtualmachineinstances" else "v1VMRemoveVolume",
                "Unplug a hot-plugged volume (body: RemoveVolumeOptions) "
                + (
                    "from the running VirtualMachineInstance."
                    if resource == "virtualmachineinstances"
                    else "from the VirtualMachine's template and its running VirtualMachineInstance."
                ),
            ),
        )
    ),
    *(
        Subresource(
            "virtualmachineinstances",
            query,
            "get",
            operation_id,
            f"The {what} the guest agent reports; 409 while no guest agent is connected.",
            200,
        )
        for query, operation_id, what in (
            ("guestosinfo", "v1Guestosinfo", "guest operating system information"),
            ("userlist", "v1Userlist", "users logged in to the guest"),
            ("filesystemlist", "v1Filesystemlist", "guest file systems"),
        )
    ),
)


def _parameter(name: str, description: str, *, v3: bool) -> JsonObject:
    parameter: JsonObject = {
        "name": name,
        "in": "path",
        "required": True,
        "uniqueItems": True,
        "description": description,
    }
    if v3:
        parameter["schema"] = {"type": "string"}
    else:
        parameter["type"] = "string"
    return parameter


def _operation(sub: Subresource, *, v3: bool, vm_ref: str | None) -> JsonObject:
    response: JsonObject = {"description": "Accepted" if sub.status == 202 else "OK"}
    schema: JsonObject = {"type": "string"}
    if sub.returns_vm:
        # A document that does not define VirtualMachine (the group's own v3 one) says only "object".
        schema = {"$ref": vm_ref} if vm_ref else {"type": "object"}
    if sub.status == 200:
        media = "application/json" if sub.returns_vm else "text/plain"
        if v3:
            response["content"] = {media: {"schema": schema}}
        else:
            response["schema"] = schema
    operation: JsonObject = {
        "description": sub.description,
        "operationId": sub.operation_id,
        "tags": ["subresources"],
        "responses": {str(sub.status): response, "401": {"description": "Unauthorized"}},
    }
    if sub.method == "put":
        body: JsonObject = {"type": "object"}
        if v3:
            operation["requestBody"] = {"content": {"application/json": {"schema": body}}, "required": False}
        else:
            operation["consumes"] = ["application/json"]
            operation["parameters"] = [{"name": "body", "in": "body", "required": False, "schema": body}]
    return operation


def subresource_paths(*, v3: bool, vm_ref: str | None = None) -> dict[str, JsonObject]:
    """Path items of every subresource; ``vm_ref`` is where the document defines VirtualMachine."""
    parameters = [
        _parameter("name", "Name of the resource", v3=v3),
        _parameter("namespace", "Object name and auth scope, such as for teams and projects", v3=v3),
    ]
    return {
        sub.path: {sub.method: _operation(sub, v3=v3, vm_ref=vm_ref), "parameters": parameters}
        for sub in SUBRESOURCES
    }
