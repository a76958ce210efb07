"""``vmplane plan``: which changes would go live and which would wait for a restart.

``vmplane plan -f vm.yaml`` asks the server: a dry-run update of the live VM, which computes the
pending changes and live updates against the running guest without storing anything.
``vmplane plan OLD.yaml NEW.yaml`` works offline: OLD is the VM as its guest booted, NEW the edited
VM; the cluster configuration comes from ``--kubevirt`` (a KubeVirt manifest) or ``--strategy``, the
instance types and preferences the VMs refer to from ``--sizing`` files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from vmplane.api.decoding import decode
from vmplane.api.defaults import initial_cpu_topology, initial_memory_status
from vmplane.api.errors import InvalidObjectError
from vmplane.api.instancetype import INSTANCETYPE_KINDS, PREFERENCE_KINDS
from vmplane.api.instancetype_refs import Lookup, store_resource
from vmplane.api.kubevirt import KubeVirt, KubeVirtConfiguration, RolloutStrategy
from vmplane.api.validation import validate_vm
from vmplane.api.vm import PendingChange, VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceStatus
from vmplane.apiserver.typed_kinds import LIVE_CHANGES_ANNOTATION
from vmplane.cli.client import ApiClient, ApiError, load_client_config
from vmplane.cli.flags import add_connection_flags, add_output_flag
from vmplane.cli.render import LiveRow, changes_document, print_changes, print_document
from vmplane.rollout.effective import EffectiveSpec
from vmplane.rollout.plan import Plan, plan, vm_path
from vmplane.rollout.vm_effective import vm_effective

__all__ = ["register"]


class UsageError(Exception):
    """Bad input to the command: printed as one line, exit code 2."""


def register(subparsers: Any) -> None:
    """Add the ``plan`` sub-command."""
    parser = subparsers.add_parser(
        "plan",
        help="show which changes go live and which wait for a restart",
        description="Show what an edit of a VM would do: which changes reach the running guest now "
        "and which wait for a restart. With -f, the server answers with a dry run against the live VM "
        "(nothing is stored); with OLD.yaml NEW.yaml, the same decision is made offline.",
    )
    parser.add_argument(
        "old", type=Path, nargs="?", metavar="OLD.yaml", help="the VM as its guest is running"
    )
    parser.add_argument("new", type=Path, nargs="?", metavar="NEW.yaml", help="the edited VM")
    parser.add_argument(
        "-f",
        "--filename",
        type=Path,
        metavar="FILE",
        help="dry-run this VM manifest against the live VM on the server",
    )
    add_connection_flags(parser)
    add_output_flag(parser)
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
    parser.add_argument(
        "--sizing",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="instance types and preferences the offline VMs refer to (YAML, several documents; repeatable)",
    )
    parser.set_defaults(func=run)


def _sizing_lookup(paths: list[Path]) -> Lookup:
    """A lookup over the instance types and preferences in ``paths`` (any namespace matches)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as err:
            raise UsageError(f"cannot read {path}: {err}") from err
        for doc in documents:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind not in (*INSTANCETYPE_KINDS, *PREFERENCE_KINDS):
                raise UsageError(f"{path}: expected instance types and preferences, found kind {kind!r}")
            metadata = {"uid": "offline", "generation": 1, **(doc.get("metadata") or {})}
            found[(store_resource(kind), str(metadata.get("name")))] = {**doc, "metadata": metadata}
    return lambda resource, _namespace, name: found.get((resource, name))


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


def _effective(vm: VirtualMachine, config: KubeVirtConfiguration, lookup: Lookup) -> EffectiveSpec:
    sized = vm_effective(vm, config, lookup)
    if sized.effective is None:
        reasons = [f"{c.field}: {c.message}" for c in sized.causes] + sized.resolution.missing
        hint = "" if sized.causes else " (pass it with --sizing FILE)"
        raise UsageError(f"VirtualMachine {vm.metadata.name}: {'; '.join(reasons)}{hint}")
    return sized.effective


def offline_plan(
    old: VirtualMachine,
    new: VirtualMachine,
    config: KubeVirtConfiguration,
    lookup: Lookup = lambda _resource, _namespace, _name: None,
) -> Plan:
    """Plan NEW against a guest freshly booted from OLD (``lookup`` finds their instance types)."""
    running = _effective(old, config, lookup).spec
    observed = VirtualMachineInstanceStatus(
        current_cpu_topology=initial_cpu_topology(running), memory=initial_memory_status(running)
    )
    return plan(running=running, desired=_effective(new, config, lookup), observed=observed, config=config)


def server_plan(args: argparse.Namespace, console: Console) -> int:
    """Dry-run the manifest as an update of the live VM and print what it would do."""
    data = _load_yaml(args.filename)
    if not isinstance(data, dict) or data.get("kind") != "VirtualMachine":
        raise UsageError(f"{args.filename}: expected a VirtualMachine manifest (kind: VirtualMachine)")
    metadata = data.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise UsageError(f"{args.filename}: metadata.name is required")
    client = ApiClient(load_client_config(args.kubeconfig, _namespace(args.namespace, metadata)))
    where = {"name": name, "namespace": client.config.namespace}
    try:
        current = client.request("GET", client.vm_path(name))
    except ApiError as err:
        if err.code != 404:
            raise
        if args.output is not None:
            _print(
                console,
                args.output,
                live=[],
                pending=[],
                restart_required=None,
                extra={**where, "exists": False},
            )
            return 0
        console.print(
            f"VM {name} does not exist: applying it creates it, and its guest boots with this spec."
        )
        return 0
    body = {
        **data,
        "metadata": {**data.get("metadata", {}), "resourceVersion": current["metadata"]["resourceVersion"]},
    }
    projected = client.request("PUT", client.vm_path(name) + "?dryRun=All&fieldValidation=Strict", body)
    vm = VirtualMachine.model_validate(projected)
    annotations = vm.metadata.annotations or {}
    live = json.loads(annotations.get(LIVE_CHANGES_ANNOTATION, "[]"))
    status = vm.status
    required = status.condition("RestartRequired") if status else None
    _print(
        console,
        args.output,
        live=[(c["path"], c["running"], c["desired"], c["kind"]) for c in live],
        pending=list(status.pending_changes or []) if status else [],
        restart_required=(required.reason or "", required.message or "") if required else None,
        extra={**where, "exists": True},
    )
    return 0


def _namespace(flag: str | None, metadata: dict[str, Any]) -> str | None:
    """The namespace to plan in: ``-n``, else the manifest's; refused when they differ, as kubectl does."""
    manifest = metadata.get("namespace")
    if flag and manifest and flag != manifest:
        raise UsageError(
            f'the namespace from the provided object "{manifest}" does not match the namespace "{flag}". '
            f"You must pass '--namespace={manifest}' to perform this operation."
        )
    return flag or manifest


def _print(
    console: Console,
    output: str | None,
    *,
    live: list[LiveRow],
    pending: list[PendingChange],
    restart_required: tuple[str, str] | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Tables on the console, or one JSON/YAML document with ``-o``."""
    if output is None:
        print_changes(console, live=live, pending=pending, restart_required=restart_required)
        return
    document = changes_document(live=live, pending=pending, restart_required=restart_required)
    print_document({**(extra or {}), **document}, output)


def run(args: argparse.Namespace) -> int:
    """Print the plan; exit 0, 1 when the server refuses, or 2 with one line on bad input."""
    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.filename is not None:
        try:
            return server_plan(args, console)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except ApiError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if args.old is None or args.new is None:
        print("error: give -f FILE (against the server) or OLD.yaml NEW.yaml (offline)", file=sys.stderr)
        return 2
    try:
        config = _config(args)
        lookup = _sizing_lookup(args.sizing)
        result = offline_plan(_load_vm(args.old, config), _load_vm(args.new, config), config, lookup)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    strategy = config.rollout_strategy.value
    if args.output is None:
        console.print(f"vmRolloutStrategy: {strategy}")
    condition = result.restart_required
    _print(
        console,
        args.output,
        live=[(vm_path(c.path), c.running, c.desired, c.kind.value) for c in result.live],
        pending=list(result.pending),
        restart_required=(condition.reason, condition.message) if condition else None,
        extra={"vmRolloutStrategy": strategy},
    )
    return 0
