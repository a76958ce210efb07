"""The node-failure timing flags, shared by ``vmplane serve``, ``vmplane controller`` and
``vmplane agent`` so the three spell, default and check them alike (``controller.node_health``)."""

from __future__ import annotations

import argparse

from vmplane.agent.fencing import DEFAULT_FENCE_TIMEOUT
from vmplane.controller.node_health import HealthConfig

__all__ = ["add_fence_timeout_flag", "add_node_monitor_flags", "health_from"]


def add_node_monitor_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=HealthConfig().grace_period,
        help="seconds without a Lease renewal after which a node is Ready=Unknown and tainted unreachable "
        "(default: %(default)s)",
    )


def add_fence_timeout_flag(parser: argparse.ArgumentParser, *, help_end: str) -> None:
    parser.add_argument(
        "--node-fence-timeout",
        type=float,
        default=DEFAULT_FENCE_TIMEOUT,
        help="seconds without a Lease renewal after which the agent stops its guests itself; "
        f"{help_end} (default: %(default)s)",
    )


def health_from(args: argparse.Namespace) -> HealthConfig:
    """The timing of both flags; ``ValueError`` (naming both) unless 0 < fence timeout < grace period."""
    return HealthConfig(grace_period=args.node_monitor_grace_period, fence_timeout=args.node_fence_timeout)
