"""Terminal rendering shared by the commands: plans and pending changes as tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmplane.api.vm import PendingChange

__all__ = ["OUTPUT_FORMATS", "LiveRow", "changes_document", "print_changes", "print_document", "short"]

OUTPUT_FORMATS = ("json", "yaml")


def short(value: Any) -> str:
    """A value as one compact line (``<absent>`` for None)."""
    if value is None:
        return "<absent>"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


LiveRow = tuple[str, Any, Any, str]


def print_changes(
    console: Console,
    *,
    live: Sequence[LiveRow],
    pending: Sequence[PendingChange],
    restart_required: tuple[str, str] | None,
) -> None:
    """Print live changes (path, running, desired, kind), pending changes and the condition."""
    if live:
        table = Table(title="Live: applied to the running guest now", title_justify="left")
        for column in ("PATH", "RUNNING", "DESIRED", "KIND"):
            table.add_column(column, overflow="fold")
        for path, running, desired, kind in live:
            table.add_row(escape(path), escape(short(running)), escape(short(desired)), kind)
        console.print(table)
    if pending:
        table = Table(title="Pending: wait for a restart", title_justify="left")
        for column in ("PATH", "RUNNING", "DESIRED", "REASON", "SOURCE"):
            table.add_column(column, overflow="fold")
        for change in pending:
            table.add_row(
                escape(change.path),
                escape(short(change.running)),
                escape(short(change.desired)),
                change.reason,
                change.source.value,
            )
        console.print(table)
    if restart_required is not None:
        reason, message = restart_required
        console.print(f"RestartRequired=True ({reason}): {escape(message)}")
    elif not live and not pending:
        console.print("No changes: the running guest matches the VM.")
    else:
        console.print("RestartRequired: absent")


def changes_document(
    *,
    live: Sequence[LiveRow],
    pending: Sequence[PendingChange],
    restart_required: tuple[str, str] | None,
) -> dict[str, Any]:
    """The same changes as ``print_changes`` shows, as data for ``-o json|yaml`` (values unabridged)."""
    return {
        "live": [
            {"path": path, "running": running, "desired": desired, "kind": kind}
            for path, running, desired, kind in live
        ],
        "pending": [change.model_dump(mode="json", by_alias=True) for change in pending],
        "restartRequired": None
        if restart_required is None
        else {"reason": restart_required[0], "message": restart_required[1]},
    }


def print_document(document: dict[str, Any], output: str) -> None:
    """Print ``document`` on stdout as JSON (indented, as kubectl does) or YAML."""
    if output == "json":
        sys.stdout.write(json.dumps(document, indent=4) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
