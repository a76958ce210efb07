"""``vmplane plan OLD.yaml NEW.yaml``: what editing a running VM from OLD to NEW would do, offline.

OLD is the VM as its guest booted; NEW is the edited VM. The cluster configuration comes from
``--kubevirt`` (a KubeVirt manifest) or ``--strategy``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from vmplane.api.decoding import decode
from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.errors import InvalidObjectError
from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration, RolloutStrategy
from vmplane.api.validation import validate_vm
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceStatus
from vmplane.cli.render import print_changes
from vmplane.rollout.effective import effective_spec
from vmplane.rollout.plan import Plan, plan, vm_path

__all__ = ["register"]


class UsageError(Exception):
    """Bad input to the command: printed as one line, exit code 2."""


def register(subparsers: Any) -> None:
    """Add the ``plan`` sub-command."""
    parser = subparsers.add_parser("plan", help="show which changes go live and which wait for a restart")
    parser.add_argument("old", type=Path, metavar="OLD.yaml", help="the VM as its guest is running")
    parser.add_argument("new", type=Path, metavar="NEW.yaml", help="the edited VM")
    parser.add_argument(
        "--strategy",
        choices=[s.value for s in RolloutStrategy],
        help="vmRolloutStrategy (default: Stage, or the one in --kubevirt)",
    )
    parser.add_argument(
        "--kubevirt",
        type=Path,
        metavar="KUBEVIRT.yaml",
        help="a KubeVirt manifest supplying the cluster configuration",
    )
    parser.set_defaults(func=run)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {err}") from err


def _load_vm(path: Path, config: KubeVirtConfiguration) -> VirtualMachine:
    data = _load_yaml(path)
    if not isinstance(data, dict) or data.get("kind") != "VirtualMachine":
        raise UsageError(f"{path}: expected a VirtualMachine manifest (kind: VirtualMachine)")
    try:
        vm = decode(VirtualMachine, data, kind="VirtualMachine").value
    except InvalidObjectError as err:
        raise UsageError(f"{path}: {err}") from err
    causes = validate_vm(vm, config)
    if causes:
        raise UsageError(f"{path}: {InvalidObjectError('VirtualMachine', vm.metadata.name or '', causes)}")
    return vm


def _config(args: argparse.Namespace) -> KubeVirtConfiguration:
    config = KubeVirtConfiguration()
    if args.kubevirt is not None:
        try:
            config = decode(KubeVirt, _load_yaml(args.kubevirt), kind="KubeVirt").value.spec.configuration
        except InvalidObjectError as err:
            raise UsageError(f"{args.kubevirt}: {err}") from err
    if args.strategy is not None:
        config = config.model_copy(update={"vm_rollout_strategy": RolloutStrategy(args.strategy)})
    return config


def offline_plan(old: VirtualMachine, new: VirtualMachine, config: KubeVirtConfiguration) -> Plan:
    """Plan NEW against a guest freshly booted from OLD."""
    running = effective_spec(old.spec.template.spec, config).spec
    observed = VirtualMachineInstanceStatus(
        current_cpu_topology=initial_cpu_topology(running), memory=initial_memory_status(running)
    )
    return plan(
        running=running,
        desired=effective_spec(new.spec.template.spec, config),
        observed=observed,
        config=config,
    )


def run(args: argparse.Namespace) -> int:
    """Print the plan; exit 0, or 2 with one line on bad input."""
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        config = _config(args)
        result = offline_plan(_load_vm(args.old, config), _load_vm(args.new, config), config)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console.print(f"vmRolloutStrategy: {config.rollout_strategy.value}")
    condition = result.restart_required
    print_changes(
        console,
        live=[(vm_path(c.path), c.running, c.desired, c.kind.value) for c in result.live],
        pending=result.pending,
        restart_required=(condition.reason, condition.message) if condition else None,
    )
    return 0
