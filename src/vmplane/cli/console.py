"""``vmplane console VM`` (interactive serial console) and ``vmplane vnc VM`` (a local VNC proxy).

``console`` is interactive, as ``virtctl console``: what you type goes to the guest's serial port and
``Ctrl-]`` leaves. ``--log`` (or ``--follow``/``--tail``) prints what the guest wrote instead, from
the same subresource without a websocket, like ``kubectl logs`` shows a container's output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlencode

from vmplane.api import names
from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from
from vmplane.cli.guest_streams import console_session, local_proxy, stream_path

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``console`` and ``vnc``."""
    parser = subparsers.add_parser(
        "console",
        help="connect to a VM's serial console (Ctrl-] leaves), or show its log with --log",
        description="Connect to a VM's serial console: what you type goes to the guest, Ctrl-] leaves. "
        "With --log, print what the guest wrote instead (like kubectl logs); with --follow, keep "
        "printing until the guest stops.",
    )
    parser.add_argument("vm", metavar="VM")
    add_connection_flags(parser)
    parser.add_argument("--log", action="store_true", help="print the console log (read-only)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the VMI ends")
    parser.add_argument("--tail", type=int, default=None, metavar="N", help="start with the last N lines")
    parser.set_defaults(func=_console)

    parser = subparsers.add_parser(
        "vnc",
        help="proxy a VM's VNC display to a local port",
        description="Listen on 127.0.0.1 (--port, or any free port) and relay each VNC viewer that "
        "connects to the VM's display, until Ctrl-C.",
    )
    parser.add_argument("vm", metavar="VM")
    add_connection_flags(parser)
    parser.add_argument("--port", type=int, default=0, help="local port (default: any free one)")
    parser.set_defaults(func=_vnc)


def _bad_name(name: str) -> str | None:
    errors = names.dns1123_subdomain_errors(name)
    return f"VM: invalid value {name!r}: {', '.join(errors)}" if errors else None


def _vnc(args: argparse.Namespace) -> int:
    if (problem := _bad_name(args.vm)) is not None or not 0 <= args.port <= 65535:
        print(f"error: {problem or f'--port: {args.port} is not a port number'}", file=sys.stderr)
        return 1

    def ready(port: int) -> None:
        print(f"VNC of {args.vm} on 127.0.0.1:{port} (Ctrl-C to stop)", flush=True)

    try:
        config = client_from(args).config
        url = stream_path(config, args.vm, "vnc")
        asyncio.run(local_proxy(config, url, address="127.0.0.1", port=args.port, ready=ready))
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _console(args: argparse.Namespace) -> int:
    if (problem := _bad_name(args.vm)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if not (args.log or args.follow or args.tail is not None):
        try:
            asyncio.run(console_session(client_from(args).config, args.vm))
        except ApiError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        return 0
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
