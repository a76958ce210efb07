"""``vmplane port-forward vm/NAME LOCAL:REMOTE`` and ``vmplane ssh [user@]vm/NAME``, as virtctl's.

port-forward listens on 127.0.0.1 (``--address`` to choose another local address) and opens the
``portforward/REMOTE`` websocket subresource per connection, through the API server and the node
agent to the guest's port on its user-mode network; ``--stdio`` relays stdin and stdout instead,
which is what ``ssh`` uses as its ProxyCommand (as ``virtctl ssh --local-ssh`` runs the system ssh).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from vmplane.api import names
from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from
from vmplane.cli.guest_streams import local_proxy, stdio_tunnel, stream_path

__all__ = ["Target", "parse_ports", "parse_target", "register", "ssh_argv"]

_KINDS = {"vm": "virtualmachines", "vmi": "virtualmachineinstances"}


@dataclass(frozen=True, slots=True)
class Target:
    """``[user@]vm/NAME`` or ``[user@]vmi/NAME``."""

    kind: str
    name: str
    user: str | None = None


def parse_target(text: str) -> Target:
    """Parse a target; ValueError names what is wrong."""
    user, _, rest = text.rpartition("@")
    kind, slash, name = rest.partition("/")
    if not slash or kind not in _KINDS:
        raise ValueError(f"{text!r}: expected vm/NAME or vmi/NAME")
    errors = names.dns1123_subdomain_errors(name)
    if errors:
        raise ValueError(f"{text!r}: invalid name {name!r}: {', '.join(errors)}")
    if user and not all(c.isalnum() or c in "._-" for c in user):
        raise ValueError(f"{text!r}: invalid user name {user!r}")
    return Target(_KINDS[kind], name, user or None)


def parse_ports(text: str) -> tuple[int, int]:
    """``LOCAL:REMOTE`` or ``PORT`` (both the same) -> (local, remote); local 0 is any free port."""
    local, _, remote = text.partition(":")
    try:
        ports = (int(local), int(remote or local))
    except ValueError as err:
        raise ValueError(f"{text!r}: expected LOCAL:REMOTE port numbers") from err
    if not 0 <= ports[0] <= 65535 or not 1 <= ports[1] <= 65535:
        raise ValueError(f"{text!r}: ports must be 1-65535 (local 0: any free port)")
    return ports


def ssh_argv(target: Target, *, user: str | None, proxy: list[str], extra: list[str]) -> list[str]:
    """The system ssh command line that reaches ``target`` through ``proxy`` (a port-forward --stdio)."""
    login = user or target.user
    host = f"{'vm' if target.kind == 'virtualmachines' else 'vmi'}.{target.name}"
    return [
        "ssh",
        "-o",
        f"ProxyCommand={shlex.join(proxy)}",
        "-o",
        f"HostKeyAlias={host}",
        *(["-l", login] if login else []),
        *extra,
        host,
    ]


def register(subparsers: Any) -> None:
    """Add port-forward and ssh."""
    parser = subparsers.add_parser(
        "port-forward",
        help="forward local ports to a VM's guest through the API",
        description="Listen on 127.0.0.1 (or --address) and tunnel each connection to the guest's port "
        "through the API server and the node agent; --stdio tunnels stdin/stdout instead.",
    )
    parser.add_argument("target", metavar="vm/NAME")
    parser.add_argument("ports", metavar="LOCAL:REMOTE", nargs="+")
    parser.add_argument(
        "--address", default="127.0.0.1", help="local address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--stdio", action="store_true", help="tunnel stdin/stdout to the one port given")
    add_connection_flags(parser)
    parser.set_defaults(func=_port_forward)
    parser = subparsers.add_parser(
        "ssh",
        help="run the system ssh into a VM's guest through a port-forward tunnel",
        description="Run ssh with a ProxyCommand that tunnels to the guest's port through the API.",
    )
    parser.add_argument("target", metavar="[user@]vm/NAME")
    parser.add_argument("-p", "--port", type=int, default=22, help="the guest's ssh port (default 22)")
    parser.add_argument("-l", "--username", default=None, help="the user to log in as")
    parser.add_argument("ssh_args", nargs=argparse.REMAINDER, help="more ssh arguments, after --")
    add_connection_flags(parser)
    parser.set_defaults(func=_ssh)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _port_forward(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
        forwards = [parse_ports(p) for p in args.ports]
    except ValueError as err:
        return _fail(str(err))
    if args.stdio and len(forwards) != 1:
        return _fail("--stdio: give exactly one port")
    try:
        config = client_from(args).config

        def url(remote: int) -> str:
            return stream_path(config, target.name, f"portforward/{remote}", kind=target.kind)

        if args.stdio:
            asyncio.run(stdio_tunnel(config, url(forwards[0][1])))
            return 0

        async def serve() -> None:
            def ready_for(remote: int) -> Any:
                def ready(port: int) -> None:
                    print(f"Forwarding from {args.address}:{port} -> {remote}", flush=True)

                return ready

            await asyncio.gather(
                *(
                    local_proxy(
                        config, url(remote), address=args.address, port=local, ready=ready_for(remote)
                    )
                    for local, remote in forwards
                )
            )

        asyncio.run(serve())
    except ApiError as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(f"cannot listen on {args.address}: {err.strerror or err}")
    except KeyboardInterrupt:
        return 0
    return 0


def _ssh(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
    except ValueError as err:
        return _fail(str(err))
    if not 1 <= args.port <= 65535:
        return _fail(f"--port: {args.port} is not a port number")
    if shutil.which("ssh") is None:
        return _fail("ssh: not found on PATH (install openssh-client)")
    proxy = [sys.executable, "-m", "vmplane.cli.main", "port-forward", "--stdio"]
    if args.kubeconfig:
        proxy += ["--kubeconfig", args.kubeconfig]
    if args.namespace:
        proxy += ["-n", args.namespace]
    proxy += [f"{'vm' if target.kind == 'virtualmachines' else 'vmi'}/{target.name}", str(args.port)]
    extra = [a for a in args.ssh_args if a != "--"]
    argv = ssh_argv(target, user=args.username, proxy=proxy, extra=extra)
    os.execvp(argv[0], argv)
