"""``vmplane console VM``: print a VMI's serial console log (``--follow`` to keep printing).

Read-only: it shows what the guest wrote to its serial port, from the API's
``virtualmachineinstances/{name}/console`` subresource, like ``kubectl logs`` shows a container's output.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlencode

from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``console``."""
    parser = subparsers.add_parser(
        "console",
        help="show a VM's serial console log",
        description="Print what a VM's guest wrote to its serial console (like kubectl logs); with "
        "--follow, keep printing until the guest stops.",
    )
    parser.add_argument("vm", metavar="VM")
    add_connection_flags(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the VMI ends")
    parser.add_argument("--tail", type=int, default=None, metavar="N", help="start with the last N lines")
    parser.set_defaults(func=_console)


def _console(args: argparse.Namespace) -> int:
    query: dict[str, str] = {}
    if args.follow:
        query["follow"] = "true"
    if args.tail is not None:
        query["tailLines"] = str(args.tail)
    try:
        client = client_from(args)
        path = (
            f"/apis/subresources.kubevirt.io/v1/namespaces/{client.config.namespace}"
            f"/virtualmachineinstances/{args.vm}/console"
        )
        out = sys.stdout.buffer
        for chunk in client.stream(path + (f"?{urlencode(query)}" if query else "")):
            out.write(chunk)
            out.flush()
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
