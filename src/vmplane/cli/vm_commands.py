"""virtctl-like commands: ``start``, ``stop``, ``restart``, ``revert`` and ``pending``.

They talk to the API as kubectl does (``--kubeconfig``/``$KUBECONFIG``, ``-n``); errors are one line
on stderr and exit code 1; ``--wait`` shows progress until the VM reaches the state asked for.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from vmplane.api.vm import PendingChange, VirtualMachine
from vmplane.cli.client import ApiClient, ApiError, load_client_config
from vmplane.cli.render import OUTPUT_FORMATS, changes_document, print_changes, print_document

__all__ = ["add_connection_flags", "add_output_flag", "client_from", "register"]

POLL_INTERVAL = 0.25


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """``--kubeconfig`` and ``-n/--namespace``, as kubectl spells them."""
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    """``-o/--output json|yaml``: the result as data instead of tables."""
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default=None,
        help="print the result as JSON or YAML instead of tables",
    )


def client_from(args: argparse.Namespace) -> ApiClient:
    """A client for the kubeconfig and namespace the flags name."""
    return ApiClient(load_client_config(args.kubeconfig, args.namespace))


def register(subparsers: Any) -> None:
    """Add start, stop, restart, revert and pending."""
    for action, help_text, description in (
        (
            "start",
            "start a VM",
            "Start a stopped VM (its run strategy decides whether that is allowed, as with virtctl).",
        ),
        (
            "stop",
            "stop a VM",
            "Stop a VM: its guest is shut down and its VMI removed; the VM object stays.",
        ),
        (
            "restart",
            "restart a VM: a new guest boots from the current spec and pending changes apply",
            "Restart a running VM: a new guest boots from the VM's current spec, so every pending "
            "change applies and RestartRequired clears.",
        ),
    ):
        parser = subparsers.add_parser(action, help=help_text, description=description)
        parser.add_argument("vm", metavar="VM")
        add_connection_flags(parser)
        parser.add_argument("--wait", action="store_true", help="wait until the VM reaches the new state")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
        parser.set_defaults(func=_lifecycle, action=action)
    parser = subparsers.add_parser(
        "revert",
        help="write the running values back for pending changes",
        description="Write the running guest's values back into the VM template for its pending changes "
        "(all of them, or the --path ones), so nothing waits for a restart any more.",
    )
    parser.add_argument("vm", metavar="VM")
    parser.add_argument(
        "--path",
        action="append",
        dest="paths",
        metavar="PATH",
        help="a pending path to revert (repeatable; default: all)",
    )
    add_connection_flags(parser)
    parser.set_defaults(func=_revert)
    parser = subparsers.add_parser(
        "pending",
        help="list a VM's pending changes",
        description="List every change of a VM that waits for a restart: path, running value, desired "
        "value, reason and source (template or cluster), and the RestartRequired condition.",
    )
    parser.add_argument("vm", metavar="VM")
    add_connection_flags(parser)
    add_output_flag(parser)
    parser.set_defaults(func=_pending)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _get_vm(client: ApiClient, name: str) -> VirtualMachine:
    return VirtualMachine.model_validate(client.request("GET", client.vm_path(name)))


def _vmi_uid(client: ApiClient, name: str) -> str | None:
    try:
        vmi = client.request("GET", client.vmi_path(name))
    except ApiError as err:
        if err.code == 404:
            return None
        raise
    return str(vmi["metadata"].get("uid"))


def _wait(
    client: ApiClient, name: str, done: Callable[[VirtualMachine, str | None], bool], timeout: float
) -> bool:
    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {name}") as spinner:
        while time.monotonic() < deadline:
            vm = _get_vm(client, name)
            uid = _vmi_uid(client, name)
            printable = vm.status.printable_status.value if vm.status and vm.status.printable_status else "?"
            spinner.update(f"waiting for {name}: {printable}")
            if done(vm, uid):
                return True
            time.sleep(POLL_INTERVAL)
    return False


def _running(vm: VirtualMachine, _uid: str | None) -> bool:
    return (
        vm.status is not None
        and vm.status.printable_status is not None
        and vm.status.printable_status.value == "Running"
    )


def _lifecycle(args: argparse.Namespace) -> int:
    try:
        client = client_from(args)
        before = _vmi_uid(client, args.vm) if args.action == "restart" else None
        client.request("PUT", client.vm_path(args.vm, args.action))
        if args.wait:
            if args.action == "stop":
                reached = _wait(client, args.vm, lambda vm, uid: uid is None, args.timeout)
            elif args.action == "restart":
                reached = _wait(
                    client,
                    args.vm,
                    lambda vm, uid: uid not in (None, before) and _running(vm, uid),
                    args.timeout,
                )
            else:
                reached = _wait(client, args.vm, _running, args.timeout)
            if not reached:
                return _fail(f"timed out after {args.timeout:.0f}s waiting for {args.vm} to {args.action}")
    except ApiError as err:
        return _fail(str(err))
    print(f"VM {args.vm} was scheduled to {args.action}")
    return 0


def _show_pending(vm: VirtualMachine, output: str | None) -> None:
    status = vm.status
    pending: list[PendingChange] = list(status.pending_changes or []) if status else []
    required = status.condition("RestartRequired") if status else None
    condition = (required.reason or "", required.message or "") if required is not None else None
    if output is not None:
        document = changes_document(live=[], pending=pending, restart_required=condition)
        print_document({"name": vm.metadata.name, **document}, output)
        return
    print_changes(
        Console(width=None if sys.stdout.isatty() else 200),
        live=[],
        pending=pending,
        restart_required=condition,
    )


def _pending(args: argparse.Namespace) -> int:
    try:
        _show_pending(_get_vm(client_from(args), args.vm), args.output)
    except ApiError as err:
        return _fail(str(err))
    return 0


def _revert(args: argparse.Namespace) -> int:
    try:
        client = client_from(args)
        body = {"paths": args.paths} if args.paths else None
        updated = VirtualMachine.model_validate(
            client.request("PUT", client.vm_path(args.vm, "revert"), body)
        )
    except ApiError as err:
        return _fail(str(err))
    print(
        f"VM {args.vm}: reverted {', '.join(args.paths) if args.paths else 'every pending change'} "
        f"(generation {updated.metadata.generation})"
    )
    return 0
