"""The ``vmplane`` command: one sub-command per module, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

__all__ = ["main"]

DESCRIPTION = """\
vmplane runs KubeVirt VirtualMachines (kubevirt.io/v1) on QEMU guests and decides how each change
reaches a running guest: under the Stage rollout strategy every change waits for a restart; under
LiveUpdate, CPU, memory, disks, NICs and placement are hot-plugged and the rest waits."""

EPILOG = """\
Start with `vmplane serve --demo`, then point kubectl at the kubeconfig it prints.
`vmplane COMMAND --help` describes each command."""

# Each module registers its sub-commands and sets ``func`` (argparse.Namespace -> exit code).
COMMAND_MODULES = (
    "vmplane.cli.plan",
    "vmplane.cli.serve",
    "vmplane.cli.cluster",
    "vmplane.cli.dev_cluster",
    "vmplane.cli.fence_watchdog",
    "vmplane.cli.kubeconfig",
    "vmplane.cli.vm_commands",
    "vmplane.cli.migrate",
    "vmplane.cli.drain",
    "vmplane.cli.guest_commands",
    "vmplane.cli.volume_commands",
    "vmplane.cli.port_forward",
    "vmplane.cli.restarts",
    "vmplane.cli.console",
    "vmplane.cli.token",
    "vmplane.cli.create_vm",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="vmplane",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"vmplane {importlib.metadata.version('vmplane')}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
