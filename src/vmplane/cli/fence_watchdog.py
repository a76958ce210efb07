"""``vmplane fence-watchdog``: the detached process ``vmplane agent --hypervisor qemu`` starts so its
guests are fenced even when the agent itself is killed (``hypervisor.qemu.watchdog``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from vmplane.hypervisor.qemu.watchdog import watch

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fence-watchdog",
        help="stop this host's QEMU guests once the agent stops renewing (started by the agent)",
        description="Watch the heartbeat file the node agent writes after each renewal of its Node's "
        "Lease; once the last renewal is TIMEOUT seconds old, kill every QEMU process recorded under "
        "MACHINES_DIR and exit. vmplane agent starts it; there is no need to run it by hand.",
    )
    parser.add_argument("--machines-dir", type=Path, required=True, help="the agent's QEMU run directories")
    parser.add_argument("--heartbeat", type=Path, required=True, help="the file the agent writes")
    parser.add_argument("--timeout", type=float, required=True, help="seconds without a renewal")
    parser.set_defaults(func=_fence_watchdog)


def _fence_watchdog(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not args.timeout > 0:
        print(f"vmplane fence-watchdog: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return 2
    watch(machines_dir=args.machines_dir, heartbeat=args.heartbeat, timeout=args.timeout)
    return 0
