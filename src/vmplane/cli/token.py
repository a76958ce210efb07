"""``vmplane token create|list|revoke``: API identities, each with its own token.

``create`` prints a kubeconfig holding the new token (shown this once; the data directory keeps only
its hash), for the server and CA of the kubeconfig ``vmplane serve`` wrote (``--server`` overrides
the address). A running server on the same data directory sees a create or revoke at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vmplane.apiserver.authz import Role
from vmplane.apiserver.kubeconfig import KUBECONFIG_NAME, render_kubeconfig
from vmplane.apiserver.tokens import TokenError, create_token, list_tokens, revoke_token
from vmplane.cli.client import ApiError, load_client_config
from vmplane.cli.serve import default_data_dir

__all__ = ["register"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "token",
        help="create, list and revoke API tokens",
        description="Manage the API's identities: admin (everything), viewer (read only), node (one "
        "node agent's own Node and VMIs) and controllers. Tokens are stored hashed in DATA_DIR; a "
        "running vmplane serve sees a create or revoke at once.",
    )
    commands = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = commands.add_parser(
        "create",
        help="create a token and print a kubeconfig for it",
        description="Create a token for a new identity and print a kubeconfig holding it (the token is "
        "shown only this once).",
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--node", default=None, help="the Node a node token acts for (--role node)")
    create.add_argument("--server", default=None, help="API URL (default: from DATA_DIR/kubeconfig)")
    create.add_argument("--data-dir", type=Path, default=None, help="state directory of vmplane serve")
    create.set_defaults(func=_create)

    listing = commands.add_parser(
        "list",
        help="list tokens (never the tokens themselves)",
        description="List the identities that hold a token: id, identity, role, creation time.",
    )
    listing.add_argument("--data-dir", type=Path, default=None, help="state directory of vmplane serve")
    listing.set_defaults(func=_list)

    revoke = commands.add_parser(
        "revoke",
        help="revoke a token by its id",
        description="Revoke a token: its next request is refused with 401.",
    )
    revoke.add_argument("id", help="the token's id, as `vmplane token list` shows it")
    revoke.add_argument("--data-dir", type=Path, default=None, help="state directory of vmplane serve")
    revoke.set_defaults(func=_revoke)


def _fail(message: str, code: int = 1) -> int:
    print(f"vmplane token: {message}", file=sys.stderr)
    return code


def _create(args: argparse.Namespace) -> int:
    role = Role(args.role)
    if role is Role.NODE:
        if not args.node or len(args.node) > 253 or not _DNS_SUBDOMAIN.match(args.node):
            return _fail("--role node needs --node NAME, a lowercase RFC 1123 subdomain", 2)
    elif args.node:
        return _fail("--node goes with --role node only", 2)
    data_dir: Path = args.data_dir or default_data_dir()
    try:
        config = load_client_config(str(data_dir / KUBECONFIG_NAME), None)
    except ApiError as err:
        if args.server is None:
            return _fail(f"{err}; start `vmplane serve` first or pass --server")
        server, ca_pem = args.server, None
    else:
        server, ca_pem = args.server or config.server, config.ca_pem
    try:
        record, token = create_token(data_dir, role, node=args.node)
    except (TokenError, OSError) as err:
        return _fail(str(err))
    print(f"created token {record.id} for {record.user.name}", file=sys.stderr)
    sys.stdout.write(render_kubeconfig(server=server, token=token, ca_pem=ca_pem))
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        records = list_tokens(args.data_dir or default_data_dir())
    except TokenError as err:
        return _fail(str(err))
    table = Table("ID", "IDENTITY", "ROLE", "CREATED", box=None, pad_edge=False)
    for record in records:
        table.add_row(record.id, record.user.name, record.role, record.created)
    Console(width=200).print(table)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        record = revoke_token(args.data_dir or default_data_dir(), args.id)
    except (TokenError, OSError) as err:
        return _fail(str(err))
    print(f"revoked token {record.id} ({record.user.name})")
    return 0
