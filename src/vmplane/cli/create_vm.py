"""``vmplane create vm NAME``: a VirtualMachine manifest sized by an instance type, as ``virtctl create vm``.

The manifest is printed (YAML, for ``| kubectl apply -f -``) or, with ``--apply``, created through
the API. ``--instancetype`` and ``--preference`` take ``[KIND/]NAME`` (the cluster-wide kinds by
default, as virtctl); ``--volume-containerdisk src:IMAGE[,name:NAME][,bootorder:N]`` adds a disk.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from

__all__ = ["ParseError", "register", "vm_manifest"]

_KINDS = {
    "instancetype": ("virtualmachineinstancetype", "virtualmachineclusterinstancetype"),
    "preference": ("virtualmachinepreference", "virtualmachineclusterpreference"),
}
_KIND_NAMES = {
    "virtualmachineinstancetype": "VirtualMachineInstancetype",
    "virtualmachineclusterinstancetype": "VirtualMachineClusterInstancetype",
    "virtualmachinepreference": "VirtualMachinePreference",
    "virtualmachineclusterpreference": "VirtualMachineClusterPreference",
}
#: virtctl's guest memory for a VM no instance type sizes.
DEFAULT_MEMORY = "512Mi"


class ParseError(ValueError):
    """A flag value that does not parse; the message names the flag."""


def _matcher(flag: str, value: str) -> dict[str, str]:
    kind, sep, name = value.rpartition("/")
    namespaced, cluster = _KINDS[flag]
    spelled = (kind or cluster).lower().removesuffix("s")
    if spelled not in (namespaced, cluster) or not name:
        raise ParseError(f"--{flag} {value!r}: expected [{namespaced}|{cluster}/]NAME")
    return {"kind": _KIND_NAMES[spelled], "name": name} if sep else {"name": name}


def _container_disk(value: str, index: int, vm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition(":")
        if not sep or key not in ("src", "name", "bootorder"):
            raise ParseError(
                f"--volume-containerdisk {value!r}: expected src:IMAGE[,name:NAME][,bootorder:N]"
            )
        params[key] = val
    if not params.get("src"):
        raise ParseError(f"--volume-containerdisk {value!r}: src:IMAGE is required")
    name = params.get("name") or f"{vm}-containerdisk-{index}"
    disk: dict[str, Any] = {"name": name, "disk": {}}
    if "bootorder" in params:
        if not params["bootorder"].isdigit() or int(params["bootorder"]) < 1:
            raise ParseError(f"--volume-containerdisk {value!r}: bootorder must be a positive integer")
        disk["bootOrder"] = int(params["bootorder"])
    return disk, {"name": name, "containerDisk": {"image": params["src"]}}


def vm_manifest(
    name: str,
    *,
    instancetype: str | None = None,
    preference: str | None = None,
    container_disks: tuple[str, ...] = (),
    run_strategy: str = "Always",
) -> dict[str, Any]:
    """The VirtualMachine ``virtctl create vm`` would write for these flags (raises ParseError)."""
    disks, volumes = [], []
    for index, value in enumerate(container_disks):
        disk, volume = _container_disk(value, index, name)
        disks.append(disk)
        volumes.append(volume)
    domain: dict[str, Any] = {"devices": {"disks": disks} if disks else {}}
    if instancetype is None:
        domain["memory"] = {"guest": DEFAULT_MEMORY}
    spec: dict[str, Any] = {"runStrategy": run_strategy}
    if instancetype is not None:
        spec["instancetype"] = _matcher("instancetype", instancetype)
    if preference is not None:
        spec["preference"] = _matcher("preference", preference)
    template_spec: dict[str, Any] = {"domain": domain}
    if volumes:
        template_spec["volumes"] = volumes
    spec["template"] = {"spec": template_spec}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": spec,
    }


def register(subparsers: Any) -> None:
    """Add ``create vm``."""
    create = subparsers.add_parser(
        "create",
        help="write a manifest (create vm), as virtctl create",
        description="Write a manifest for a new object, as `virtctl create` does: `create vm NAME`.",
    )
    kinds = create.add_subparsers(dest="what", required=True, metavar="WHAT")
    parser = kinds.add_parser(
        "vm",
        help="a VirtualMachine sized by an instance type",
        description="Print (or --apply) a VirtualMachine manifest, as `virtctl create vm` does.",
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--instancetype", help="[KIND/]NAME (default kind: virtualmachineclusterinstancetype)"
    )
    parser.add_argument("--preference", help="[KIND/]NAME (default kind: virtualmachineclusterpreference)")
    parser.add_argument(
        "--volume-containerdisk",
        action="append",
        default=[],
        metavar="src:IMAGE[,name:NAME][,bootorder:N]",
        help="a containerDisk volume and its disk (repeatable)",
    )
    parser.add_argument(
        "--run-strategy", default="Always", choices=("Always", "Halted", "Manual", "RerunOnFailure", "Once")
    )
    parser.add_argument("--apply", action="store_true", help="create the VM instead of printing it")
    add_connection_flags(parser)
    parser.set_defaults(func=_create_vm)


def _create_vm(args: argparse.Namespace) -> int:
    try:
        manifest = vm_manifest(
            args.name,
            instancetype=args.instancetype,
            preference=args.preference,
            container_disks=tuple(args.volume_containerdisk),
            run_strategy=args.run_strategy,
        )
    except ParseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.apply:
        sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))
        return 0
    client = client_from(args)
    path = f"/apis/kubevirt.io/v1/namespaces/{client.config.namespace}/virtualmachines"
    try:
        client.request("POST", path, manifest)
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"virtualmachine.kubevirt.io/{args.name} created")
    return 0
