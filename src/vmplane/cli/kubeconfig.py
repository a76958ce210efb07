"""``vmplane kubeconfig``: print the kubeconfig ``vmplane serve`` wrote (server, CA, token)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vmplane.apiserver.kubeconfig import KUBECONFIG_NAME
from vmplane.cli.serve import default_data_dir

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "kubeconfig",
        help="print a kubeconfig for kubectl",
        description="Print the kubeconfig vmplane serve wrote for DATA_DIR (server address, CA, admin "
        "token), e.g. vmplane kubeconfig > ~/.kube/config.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="state directory of vmplane serve")
    parser.set_defaults(func=_print)


def _print(args: argparse.Namespace) -> int:
    path = (args.data_dir or default_data_dir()) / KUBECONFIG_NAME
    try:
        sys.stdout.write(path.read_text())
    except FileNotFoundError:
        print(f"vmplane kubeconfig: {path} does not exist; start `vmplane serve` first", file=sys.stderr)
        return 1
    return 0
