"""The store flags every server command takes: ``--store`` and the client TLS files for etcd.

Shared so that ``vmplane serve`` and the API-server command choose the backend the same way; the
choice itself is made in the composition root (``app.store_opener``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vmplane.app import StoreOpener, store_opener

__all__ = ["add_store_flags", "opener_from"]


def add_store_flags(parser: Any) -> None:
    """Add ``--store`` and ``--etcd-cafile/--etcd-certfile/--etcd-keyfile`` to ``parser``."""
    parser.add_argument(
        "--store",
        default=None,
        metavar="etcd://HOST:PORT[,HOST:PORT...]",
        help="keep the API in this etcd cluster (endpoints are failed over in order) instead of the "
        "embedded SQLite store in DATA_DIR",
    )
    parser.add_argument("--etcd-cafile", type=Path, default=None, help="CA bundle for etcd's certificate")
    parser.add_argument("--etcd-certfile", type=Path, default=None, help="client certificate for etcd")
    parser.add_argument("--etcd-keyfile", type=Path, default=None, help="client key for etcd")


def opener_from(args: argparse.Namespace) -> StoreOpener | None:
    """The store opener the flags ask for; ValueError names a bad flag."""
    return store_opener(
        args.store,
        etcd_cafile=args.etcd_cafile,
        etcd_certfile=args.etcd_certfile,
        etcd_keyfile=args.etcd_keyfile,
    )
