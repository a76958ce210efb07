"""The flags every API command shares, spelled as kubectl spells them, and the client they name."""

from __future__ import annotations

import argparse

from vmplane.cli.client import ApiClient, load_client_config
from vmplane.cli.render import OUTPUT_FORMATS

__all__ = ["add_connection_flags", "add_output_flag", "client_from"]


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
