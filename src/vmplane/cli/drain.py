"""``vmplane drain NODE`` and ``vmplane uncordon NODE``: empty a node of VMIs, and give it back.

What happens to the node and to each VMI is ``cli.drain_plan``'s. Migrations are not created here:
the drain puts the cluster's drain taint on the node and the evacuation controller creates them,
as upstream's taint-driven evacuation does. That keeps one creator of evacuation migrations, so the
cluster's and the node's parallel limits hold and a VMI never gets two; and a node left tainted
goes on being evacuated after this command has ended (or timed out). The VMIs that do not migrate
are deleted here, since deleting one is what evicting its launcher pod amounts to upstream.

The command prints one line each time a VMI's step changes and when a VMI leaves the node, and
ends with 0 once no VMI is bound to the node, 1 when ``--timeout`` passes first. Between looks it
waits on a VMI watch, at most ``_LOOK_AGAIN`` seconds, so a lost watch costs no more than that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmplane.api.kubevirt import KubeVirtConfiguration, configuration_of
from vmplane.api.lifecycle import effective_run_strategy
from vmplane.api.resources import KUBEVIRTS, NODES, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.api.vm import VirtualMachine
from vmplane.api.vmi import VirtualMachineInstance
from vmplane.cli.drain_plan import DrainAction, cordoned, drain_step, uncordoned
from vmplane.client.base import ObjectClient
from vmplane.client.config import KubeconfigError, https_client, read_kubeconfig
from vmplane.store.base import ConflictError, JsonObject, NotFoundError, StoreError

__all__ = ["drain", "register", "uncordon"]

#: Seconds between looks at the node's VMIs when no watch event comes.
_LOOK_AGAIN = 1.0
#: Tries of a node write that loses to its agent's concurrent writes (resourceVersion conflicts).
_NODE_WRITE_TRIES = 10

Print = Callable[[str], None]


def register(subparsers: Any) -> None:
    """Add drain and uncordon."""
    parser = subparsers.add_parser(
        "drain",
        help="cordon a node and move or stop every VMI on it",
        description="Cordon NODE and put the drain taint on it; VMIs whose evictionStrategy allows "
        "it live-migrate elsewhere, the others are stopped (their VM starts them again elsewhere "
        "when its runStrategy says so). Ends when the node holds no VMI.",
    )
    parser.add_argument("node", metavar="NODE")
    parser.add_argument(
        "--timeout", type=float, default=0.0, metavar="S", help="give up after S seconds (0: never)"
    )
    _kubeconfig_flag(parser)
    parser.set_defaults(func=_drain_command)
    parser = subparsers.add_parser(
        "uncordon",
        help="make a node schedulable again",
        description="Clear NODE's spec.unschedulable and remove the drain taint vmplane drain put on it.",
    )
    parser.add_argument("node", metavar="NODE")
    _kubeconfig_flag(parser)
    parser.set_defaults(func=_uncordon_command)


def _kubeconfig_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")


def _kubeconfig_path(flag: str | None) -> Path:
    """As kubectl finds it: the flag, then ``$KUBECONFIG``'s first entry, then ``~/.kube/config``."""
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(flag or first or Path.home() / ".kube/config")


def _run(args: argparse.Namespace, work: Callable[[ObjectClient], Any]) -> int:
    async def with_client() -> int:
        client = https_client(read_kubeconfig(_kubeconfig_path(args.kubeconfig)))
        try:
            return 0 if await work(client) else 1
        finally:
            await client.close()

    try:
        return asyncio.run(with_client())
    except (KubeconfigError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _drain_command(args: argparse.Namespace) -> int:
    timeout = args.timeout if args.timeout > 0 else None
    return _run(args, lambda client: drain(client, args.node, timeout=timeout, say=_say))


def _uncordon_command(args: argparse.Namespace) -> int:
    return _run(args, lambda client: uncordon(client, args.node, say=_say))


def _say(line: str) -> None:
    print(line, flush=True)


async def _config(client: ObjectClient) -> KubeVirtConfiguration:
    return configuration_of((await client.list(KUBEVIRTS)).items)


async def _write_node(
    client: ObjectClient, node: str, change: Callable[[JsonObject], JsonObject | None]
) -> bool:
    """Apply ``change`` to the current node until it lands; False when there was nothing to change."""
    for _ in range(_NODE_WRITE_TRIES):
        changed = change(await client.get(NODES, "", node))
        if changed is None:
            return False
        try:
            await client.update(NODES, changed)
        except ConflictError:
            continue
        return True
    raise ConflictError(f"node {node} kept changing while it was written")


async def uncordon(client: ObjectClient, node: str, *, say: Print) -> bool:
    """Make ``node`` schedulable again (the ``uncordon`` command)."""
    taint_key = (await _config(client)).migration_limits.node_drain_taint_key
    changed = await _write_node(client, node, lambda obj: uncordoned(obj, taint_key))
    say(f"node/{node} {'uncordoned' if changed else 'already uncordoned'}")
    return True


async def drain(client: ObjectClient, node: str, *, timeout: float | None, say: Print) -> bool:
    """Drain ``node``: True once it holds no VMI, False when ``timeout`` seconds pass first."""
    config = await _config(client)
    taint_key = config.migration_limits.node_drain_taint_key
    changed = await _write_node(client, node, lambda obj: cordoned(obj, taint_key))
    say(f"node/{node} {'cordoned' if changed else 'already cordoned'} (taint {taint_key}:NoSchedule)")
    try:
        async with asyncio.timeout(timeout):
            await _empty(client, node, config, say)
    except TimeoutError:
        left, _ = await _vmis_on(client, node)
        names = ", ".join(_name(v) for v in left)
        say(f"node/{node}: timed out after {timeout:g}s with {len(left)} VMI(s) left: {names}")
        return False
    say(f"node/{node} drained")
    return True


def _name(vmi: JsonObject) -> str:
    return f"{vmi['metadata'].get('namespace', '')}/{vmi['metadata']['name']}"


def _uid(vmi: JsonObject) -> str:
    return str(vmi["metadata"].get("uid") or _name(vmi))


async def _vmis_on(client: ObjectClient, node: str) -> tuple[list[JsonObject], int]:
    """The VMIs bound to ``node`` and the resourceVersion of that list."""
    listed = await client.list(VIRTUAL_MACHINE_INSTANCES)
    on_node = [v for v in listed.items if (v.get("status") or {}).get("nodeName") == node]
    return on_node, listed.resource_version


async def _run_strategy(client: ObjectClient, vmi: VirtualMachineInstance) -> str | None:
    owner = next((o for o in vmi.metadata.owner_references or () if o.kind == "VirtualMachine"), None)
    if owner is None:
        return None
    try:
        vm = await client.get(VIRTUAL_MACHINES, vmi.metadata.namespace or "", owner.name)
    except NotFoundError:
        return None
    return effective_run_strategy(VirtualMachine.model_validate(vm)).value


async def _empty(client: ObjectClient, node: str, config: KubeVirtConfiguration, say: Print) -> None:
    """Act on the node's VMIs and report each change until none is bound to the node."""
    said: dict[str, str] = {}  # uid -> the last line printed for that VMI
    while True:
        present, since = await _vmis_on(client, node)
        for uid in set(said) - {_uid(v) for v in present}:
            say(f"{said.pop(uid).split(':', 1)[0]}: left node/{node}")
        if not present:
            return
        for raw in present:
            vmi = VirtualMachineInstance.model_validate(raw)
            step = drain_step(vmi, config=config, run_strategy=await _run_strategy(client, vmi))
            line = f"vmi/{_name(raw)}: {step.message}"
            if said.get(_uid(raw)) != line:
                say(line)
                said[_uid(raw)] = line
            if step.action is DrainAction.STOP and not vmi.metadata.deletion_timestamp:
                with contextlib.suppress(NotFoundError):
                    await client.delete(
                        VIRTUAL_MACHINE_INSTANCES, vmi.metadata.namespace or "", vmi.metadata.name or ""
                    )
        await _next_change(client, since)


async def _next_change(client: ObjectClient, since: int) -> None:
    """Return at the first VMI change after ``since``, or after ``_LOOK_AGAIN`` seconds."""
    events = client.watch(VIRTUAL_MACHINE_INSTANCES, since=since)
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        with contextlib.suppress(TimeoutError, StoreError):
            async with asyncio.timeout(_LOOK_AGAIN):
                async for _event in events:
                    break
