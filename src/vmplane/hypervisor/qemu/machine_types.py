"""The machine types this host's QEMU offers, read once from ``qemu-system-x86_64 -machine help``.

Only q35 machines are kept (``api.spec_rules.Q35_MACHINE``): every vmplane device sits on a PCIe
root port (``argv``), which the i440FX ``pc`` machines and ``microvm`` do not have. The list is an
allowlist of exact names: admission gets it injected by the composition root, and the driver checks
``MachineSpec.machine`` against it again, so ``-machine`` only ever receives a name QEMU printed.
"""

from __future__ import annotations

import functools
import subprocess

from vmplane.api.spec_rules import Q35_MACHINE

__all__ = ["FALLBACK_MACHINE_TYPES", "MachineTypesError", "parse_machine_help", "q35_machine_types"]

#: For hosts that run no QEMU (the simulated hypervisor): the alias every QEMU since 1.x has.
FALLBACK_MACHINE_TYPES = ("q35",)
_HELP_TIMEOUT = 10.0


class MachineTypesError(RuntimeError):
    """The QEMU binary could not be asked for its machine types."""


def parse_machine_help(text: str) -> tuple[str, ...]:
    """The q35 machine names in ``-machine help`` output, in QEMU's order (``q35`` alias included).

    Lines are ``<name> <description>`` after a ``Supported machines are:`` header; ``none`` and
    every non-q35 machine are dropped.
    """
    found: list[str] = []
    for line in text.splitlines():
        name, _, _ = line.strip().partition(" ")
        if Q35_MACHINE.fullmatch(name) and name not in found:
            found.append(name)
    return tuple(found)


@functools.cache
def q35_machine_types(qemu_binary: str = "qemu-system-x86_64") -> tuple[str, ...]:
    """``parse_machine_help`` of the binary's output, asked once per binary per process."""
    try:
        done = subprocess.run(
            [qemu_binary, "-machine", "help"],
            capture_output=True,
            text=True,
            timeout=_HELP_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MachineTypesError(f"cannot run {qemu_binary} -machine help: {err}") from err
    if done.returncode != 0:
        raise MachineTypesError(f"{qemu_binary} -machine help: {done.stderr.strip() or done.returncode}")
    names = parse_machine_help(done.stdout)
    if not names:
        raise MachineTypesError(f"{qemu_binary} offers no q35 machine type")
    return names
