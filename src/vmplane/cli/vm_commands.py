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
from vmplane.cli.client import ApiClient, ApiError
from vmplane.cli.flags import add_connection_flags, add_output_flag, client_from
from vmplane.cli.render import changes_document, print_changes, print_document
from vmplane.cli.restarts import rolling_restart

__all__ = ["register"]

POLL_INTERVAL = 0.25


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
        parser.add_argument("vm", metavar="VM", nargs="?" if action == "restart" else None)
        add_connection_flags(parser)
        parser.add_argument("--wait", action="store_true", help="wait until the VM reaches the new state")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
        if action == "restart":
            _add_rolling_flags(parser)
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


def _add_rolling_flags(parser: argparse.ArgumentParser) -> None:
    """``restart --pending``: a rolling restart of every VM with pending changes instead of one VM."""
    parser.add_argument(
        "--pending",
        action="store_true",
        help="restart every VM of the namespace with pending changes, in batches (instead of VM); "
        "--wait then also waits for the last batch to pass the health gate",
    )
    parser.add_argument(
        "-l", "--selector", default=None, help="with --pending: only VMs matching this label selector"
    )
    parser.add_argument(
        "--max-unavailable",
        default="1",
        metavar="N",
        help="with --pending: VMs restarted at a time, a count or a percentage (default 1); each batch "
        "must be Ready within --timeout before the next starts",
    )


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
    rolling = args.action == "restart" and args.pending
    if args.action == "restart" and rolling == (args.vm is not None):
        return _fail("restart needs a VM or --pending (not both)")
    if args.action == "restart" and not rolling and args.selector is not None:
        return _fail("-l/--selector needs --pending")
    try:
        client = client_from(args)
        if rolling:
            return _rolling(args, client)
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


def _rolling(args: argparse.Namespace, client: ApiClient) -> int:
    error = _max_unavailable_error(args.max_unavailable)
    if error:
        return _fail(error)
    return rolling_restart(args, client)


def _max_unavailable_error(value: str) -> str | None:
    """Why ``--max-unavailable`` is unusable (None: a count of at least 1, or 1%..100%)."""
    number = value.removesuffix("%")
    if not number.isdigit() or not (1 <= int(number) <= (100 if value.endswith("%") else sys.maxsize)):
        return f"--max-unavailable {value!r}: must be a count of at least 1 or a percentage from 1% to 100%"
    return None


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
