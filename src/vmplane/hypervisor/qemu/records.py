"""The machine record: what a restarted agent needs to find and adopt a running QEMU.

Each run directory holds ``machine.json``: the machine name, the QEMU pid and start time (so a
recycled pid is not mistaken for the guest), the accelerator, the boot spec (boot memory floor,
hotplug headroom) and what QEMU cannot report back (the NIC link states the driver set). When QEMU
exits the record also gets the outcome, so a machine that ended while the agent was away still
reports why. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vmplane.hypervisor.base import DiskSpec, KernelBoot, MachineSpec, MachineState, NicSpec

__all__ = ["MachineRecord", "read_record", "spec_from_dict", "write_record"]

_VERSION = 1


@dataclass(frozen=True, slots=True)
class MachineRecord:
    name: str
    pid: int
    starttime: int
    accel: str
    spec: MachineSpec
    links: dict[str, bool] = field(default_factory=dict)
    exit_state: MachineState | None = None
    exit_reason: str = ""

    def with_link(self, nic: str, up: bool | None) -> MachineRecord:
        links = {k: v for k, v in self.links.items() if k != nic}
        if up is not None:
            links[nic] = up
        return replace(self, links=links)


def spec_from_dict(data: dict[str, Any]) -> MachineSpec:
    boot = data.get("kernel_boot")
    return MachineSpec(
        **{
            **data,
            "disks": tuple(DiskSpec(**d) for d in data.get("disks", ())),
            "nics": tuple(NicSpec(**n) for n in data.get("nics", ())),
            "kernel_boot": KernelBoot(**boot) if boot is not None else None,
        }
    )


def write_record(path: Path, record: MachineRecord) -> None:
    data = {
        "version": _VERSION,
        "name": record.name,
        "pid": record.pid,
        "starttime": record.starttime,
        "accel": record.accel,
        "spec": asdict(record.spec),
        "links": record.links,
        "exit": None
        if record.exit_state is None
        else {"state": record.exit_state.value, "reason": record.exit_reason},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_record(path: Path) -> MachineRecord:
    """Raises ``OSError`` or ``ValueError`` (including ``KeyError``/``TypeError`` as ``ValueError``)."""
    data = json.loads(path.read_text())
    try:
        if data.get("version") != _VERSION:
            raise ValueError(f"{path}: unknown record version {data.get('version')!r}")
        exit_info = data.get("exit")
        return MachineRecord(
            name=data["name"],
            pid=int(data["pid"]),
            starttime=int(data["starttime"]),
            accel=data["accel"],
            spec=spec_from_dict(data["spec"]),
            links={str(k): bool(v) for k, v in data.get("links", {}).items()},
            exit_state=MachineState(exit_info["state"]) if exit_info else None,
            exit_reason=exit_info["reason"] if exit_info else "",
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed record: {err}") from err
