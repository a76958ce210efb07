"""virtctl's guest commands: ``pause``, ``unpause``, ``reset`` and ``soft-reboot`` of a VM or VMI.

As virtctl, ``pause vm NAME`` and ``pause vmi NAME`` both act on the VMI of that name (a VM's VMI
shares its name) through the ``virtualmachineinstances/{name}/<action>`` subresource; the API answers
202 once the request is recorded, and the VMI's ``Paused`` condition follows when the guest is.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vmplane.api import names
from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from

__all__ = ["register"]

_COMMANDS = (
    ("pause", "pause", "pause a VM's guest (its vCPUs stop; memory and devices stay)"),
    ("unpause", "unpause", "let a paused guest run again"),
    ("reset", "reset", "hard-reset a VM's guest, as a reset button would: the same VMI boots again"),
    ("soft-reboot", "softreboot", "ask a VM's guest to reboot itself (Ctrl-Alt-Delete without an agent)"),
)


def register(subparsers: Any) -> None:
    """Add pause, unpause, reset and soft-reboot."""
    for command, action, help_text in _COMMANDS:
        parser = subparsers.add_parser(
            command, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
        )
        parser.add_argument("kind", choices=("vm", "vmi"), help="vm or vmi (both name the same guest)")
        parser.add_argument("name", metavar="NAME")
        add_connection_flags(parser)
        parser.add_argument("--dry-run", action="store_true", help="only check that the request is allowed")
        parser.set_defaults(func=_operate, action=action)


def _operate(args: argparse.Namespace) -> int:
    errors = names.dns1123_subdomain_errors(args.name)
    if errors:
        print(f"error: NAME: invalid value {args.name!r}: {', '.join(errors)}", file=sys.stderr)
        return 1
    try:
        client = client_from(args)
        path = (
            f"/apis/subresources.kubevirt.io/v1/namespaces/{client.config.namespace}"
            f"/virtualmachineinstances/{args.name}/{args.action}"
        )
        client.request("PUT", path, {"dryRun": ["All"]} if args.dry_run else {})
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    suffix = " (dry run)" if args.dry_run else ""
    # virtctl's wording.
    print(f"{'VMI' if args.kind == 'vmi' else 'VM'} {args.name} was scheduled to {args.action}{suffix}")
    return 0
