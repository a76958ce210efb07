"""``vmplane restarts plan`` and ``vmplane restart --pending``: pending changes applied by restarts.

``restarts plan`` prints what the next maintenance window (or ``--window W``) will do: each VM, its
batch and the pending changes its restart applies, computed with the controller's own planning
(``rollout.restarts``) from what the API returns. ``restart --pending`` is a rolling restart now:
every VM with pending changes (``-l`` narrows them), ``--max-unavailable`` at a time, each batch
held to the windows' health gate before the next starts, with a progress bar.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vmplane.api.maintenance import BatchMember, MaintenanceWindow
from vmplane.cli.client import ApiClient, ApiError
from vmplane.cli.flags import add_connection_flags, add_output_flag, client_from
from vmplane.cli.render import print_document
from vmplane.rollout.restarts import (
    Gate,
    VMState,
    gate,
    ordered,
    scaled_max_unavailable,
)
from vmplane.rollout.window_plan import chosen_window, vm_states, window_plan

__all__ = ["plan_command", "register", "rolling_restart"]

WINDOWS_PATH = "/apis/vmplane.io/v1alpha1/maintenancewindows"
POLL_INTERVAL = 0.25


def _items(client: ApiClient, path: str) -> list[dict[str, Any]]:
    listed = client.request("GET", path)
    return list((listed or {}).get("items") or [])


def _states(client: ApiClient, namespace: str | None, selector: str | None = None) -> list[VMState]:
    """Every VM (of ``namespace``, or all) as the restart planning sees it."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    query = f"?labelSelector={quote(selector)}" if selector else ""
    return vm_states(
        _items(client, f"/apis/kubevirt.io/v1{scope}/virtualmachines{query}"),
        _items(client, f"/apis/kubevirt.io/v1{scope}/virtualmachineinstances"),
        _items(client, "/api/v1/namespaces"),
    )


def _print_plan(document: dict[str, Any]) -> None:
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(
        f"MaintenanceWindow {document['window']}: {document['start']} to {document['end']}, "
        f"at most {document['maxUnavailable']} VM(s) down at a time"
        + (" (halted: nothing more restarts in this opening)" if document["halted"] else "")
    )
    if not document["batches"]:
        console.print("Nothing to restart: no selected VM with Window approval has pending changes.")
        return
    table = Table("BATCH", "VM", "PENDING CHANGES", box=None, pad_edge=False)
    for index, batch in enumerate(document["batches"], start=1):
        for entry in batch:
            table.add_row(str(index), entry["vm"], "\n".join(entry["pendingChanges"]))
    console.print(table)


def plan_command(args: argparse.Namespace, client: ApiClient) -> int:
    """``vmplane restarts plan``."""
    windows = [MaintenanceWindow.model_validate(w) for w in _items(client, WINDOWS_PATH)]
    now = datetime.now(UTC)
    window = chosen_window(windows, args.window, now)
    if window is None:
        what = (
            f'MaintenanceWindow "{args.window}" not found' if args.window else "no MaintenanceWindow exists"
        )
        print(f"error: {what}", file=sys.stderr)
        return 1
    document = window_plan(window, _states(client, None), now)
    if args.output is not None:
        print_document(document, args.output)
    else:
        _print_plan(document)
    return 0


def _wait_batch(
    client: ApiClient,
    members: list[BatchMember],
    namespace: str,
    timeout: float,
    progress: Progress,
    task: Any,
) -> str | None:
    """Wait for the batch's gate; the first VM that failed it (None: all passed)."""
    started = datetime.now(UTC)
    left = list(members)
    while left:
        states = {vm.key: vm for vm in _states(client, namespace)}
        now = datetime.now(UTC)
        verdicts = {
            m.name: gate(
                m, states.get(f"{m.namespace}/{m.name}"), started=started, now=now, timeout=int(timeout)
            )
            for m in left
        }
        failed = [name for name, verdict in verdicts.items() if verdict is Gate.FAILED]
        if failed:
            return failed[0]
        passed = [m for m in left if verdicts[m.name] is Gate.PASSED]
        progress.advance(task, len(passed))
        left = [m for m in left if verdicts[m.name] is not Gate.PASSED]
        if left:
            time.sleep(POLL_INTERVAL)
    return None


def _max_unavailable(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def rolling_restart(args: argparse.Namespace, client: ApiClient) -> int:
    """``vmplane restart --pending``: restart every VM with pending changes, in gated batches."""
    namespace = client.config.namespace
    states = _states(client, namespace, args.selector)
    todo = ordered((vm for vm in states if vm.pending and vm.vmi_uid is not None), None)
    if not todo:
        print("No VM with pending changes.")
        return 0
    size = scaled_max_unavailable(_max_unavailable(args.max_unavailable), len(states))
    groups = [todo[i : i + size] for i in range(0, len(todo), size)]
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("restarting", total=len(todo))
        for index, group in enumerate(groups, start=1):
            progress.update(task, description=f"batch {index}/{len(groups)}")
            for vm in group:
                client.request("PUT", client.vm_path(vm.name, "restart"))
            last = index == len(groups)
            if last and not args.wait:
                progress.advance(task, len(group))
                break
            members = [BatchMember(namespace=vm.namespace, name=vm.name, vmi_uid=vm.vmi_uid) for vm in group]
            failed = _wait_batch(client, members, namespace, args.timeout, progress, task)
            if failed is not None:
                print(
                    f"error: {namespace}/{failed} did not become Ready within {args.timeout:.0f}s of its "
                    f"restart in batch {index}; stopped ({len(groups) - index} batch(es) not started)",
                    file=sys.stderr,
                )
                return 1
    print(f"Restarted {len(todo)} VM(s) in {len(groups)} batch(es) of at most {size}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``restarts plan``."""
    parser = subparsers.add_parser(
        "restarts",
        help="what maintenance windows will restart",
        description="Restarts that apply pending changes (see also `vmplane restart --pending`).",
    )
    commands = parser.add_subparsers(dest="restarts_command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan",
        help="the next maintenance window's batches",
        description="Print the next MaintenanceWindow's opening (or --window W's) and its batches: each VM, "
        "its batch and the pending changes its restart will apply.",
    )
    plan.add_argument("--window", default=None, metavar="W", help="this window rather than the next to open")
    add_connection_flags(plan)
    add_output_flag(plan)

    def run(args: argparse.Namespace) -> int:
        try:
            return plan_command(args, client_from(args))
        except ApiError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    plan.set_defaults(func=run)
