"""virtctl's ``migrate`` and ``migrate-cancel``.

``migrate VM`` asks the API for a migration of the VM's running guest (``PUT .../migrate``);
``--node N`` restricts the target to that node (``kubernetes.io/hostname=N``), ``--selector k=v``
to nodes with those labels. ``migrate-cancel VM`` deletes the VM's migration in flight, as virtctl.
There is no ``--wait`` yet: no controller moves a migration past its creation so far.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from vmplane.api.migration import ACTIVE_PHASES, MIGRATION_SELECTOR_LABEL, VirtualMachineInstanceMigration
from vmplane.cli.client import ApiClient, ApiError
from vmplane.cli.flags import add_connection_flags, client_from

__all__ = ["register"]

HOSTNAME_LABEL = "kubernetes.io/hostname"


def register(subparsers: Any) -> None:
    """Add migrate and migrate-cancel."""
    parser = subparsers.add_parser(
        "migrate",
        help="live-migrate a running VM to another node",
        description="Create a VirtualMachineInstanceMigration of the VM's running guest (as virtctl "
        "migrate). The target is chosen by the scheduler among the other nodes; --node or --selector "
        "narrow the choice.",
    )
    parser.add_argument("vm", metavar="VM")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--node", help="migrate to this node")
    target.add_argument(
        "--selector",
        action="append",
        metavar="KEY=VALUE",
        help="only to nodes with this label (repeatable): the migration's addedNodeSelector",
    )
    add_connection_flags(parser)
    parser.set_defaults(func=_migrate)
    parser = subparsers.add_parser(
        "migrate-cancel",
        help="cancel a VM's migration in flight",
        description="Delete the VM's VirtualMachineInstanceMigration that is still in flight (as virtctl "
        "migrate-cancel).",
    )
    parser.add_argument("vm", metavar="VM")
    add_connection_flags(parser)
    parser.set_defaults(func=_cancel)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _selector(args: argparse.Namespace) -> dict[str, str] | str:
    """The addedNodeSelector the flags ask for, or why they are unusable."""
    if args.node is not None:
        return {HOSTNAME_LABEL: args.node}
    selector: dict[str, str] = {}
    for pair in args.selector or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return f"--selector {pair!r}: must be KEY=VALUE"
        selector[key] = value
    return selector


def _migrate(args: argparse.Namespace) -> int:
    selector = _selector(args)
    if isinstance(selector, str):
        return _fail(selector)
    body = {"addedNodeSelector": selector} if selector else {}
    try:
        client = client_from(args)
        client.request("PUT", client.vm_path(args.vm, "migrate"), body)
    except ApiError as err:
        return _fail(str(err))
    print(f"VM {args.vm} was scheduled to migrate")
    return 0


def _migrations_path(client: ApiClient) -> str:
    return f"/apis/kubevirt.io/v1/namespaces/{client.config.namespace}/virtualmachineinstancemigrations"


def _cancel(args: argparse.Namespace) -> int:
    try:
        client = client_from(args)
        query = urllib.parse.urlencode({"labelSelector": f"{MIGRATION_SELECTOR_LABEL}={args.vm}"})
        listed = client.request("GET", f"{_migrations_path(client)}?{query}") or {}
        active = [
            m
            for m in (
                VirtualMachineInstanceMigration.model_validate(item) for item in listed.get("items", [])
            )
            if m.status is None or m.status.phase is None or m.status.phase in ACTIVE_PHASES
        ]
        if not active:
            return _fail(f"VM {args.vm} has no migration in flight")
        for migration in active:
            client.request("DELETE", f"{_migrations_path(client)}/{migration.metadata.name}")
    except ApiError as err:
        return _fail(str(err))
    print(f"VM {args.vm}: migration cancelled")
    return 0
