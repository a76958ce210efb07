"""A QEMU machine's device layout for a migration target: read from the source, checked, rebuilt.

QEMU migrates device *state*, never the device tree: the target must be started with the same
devices in the same slots, or the incoming stream is refused (or worse, loaded into the wrong
device). The source's tree is its boot (``MachineRecord.spec``) plus everything hot-plugged since:
vCPUs, DIMMs, disks, NICs. ``layout_from`` writes it down from QMP's answers (pure); the target's
driver gets the text back from the API, so ``parse_layout`` treats it as hostile input (bounded
models, names that must be the target spec's own, slots that must exist) before ``incoming_boot``
turns it into the target's boot spec and placement. Paths, MACs and the UUID always come from the
target's own spec, never from the layout: the layout says only *which* devices sit *where*.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmplane.hypervisor.base import HypervisorError, MachineSpec
from vmplane.hypervisor.qemu import naming, plans
from vmplane.hypervisor.qemu.argv import (
    DIMM_SLOTS,
    MAX_ROOT_PORTS,
    SCSI_CONTROLLER,
    SERIAL_BUS,
    Placement,
    Slot,
    boot_root_ports,
)

__all__ = ["QemuLayout", "cpu_position", "incoming_boot", "layout_from", "parse_layout"]

_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_BUS = re.compile(r"(rp([0-9]|[12][0-9])|scsi0\.0|ide\.[0-5])", re.ASCII)
_CPU_PROPS = frozenset({"socket-id", "die-id", "core-id", "thread-id"})
_MAX_DEVICES = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotModel(_Strict):
    bus: str = Field(max_length=16)
    lun: int | None = Field(default=None, ge=0, le=255)
    scsi_id: int | None = Field(default=None, ge=0, le=255)


class BootModel(_Strict):
    """The source's boot: topology, memory and machine type (migration needs them identical)."""

    sockets: int = Field(ge=1, le=1024)
    cores: int = Field(ge=1, le=256)
    threads: int = Field(ge=1, le=16)
    max_sockets: int = Field(ge=1, le=1024)
    memory_bytes: int = Field(ge=1 << 20, le=1 << 44)
    max_memory_bytes: int | None = Field(default=None, ge=1 << 20, le=1 << 44)
    machine: str = Field(max_length=64)
    cpu_model: str | None = Field(default=None, max_length=64)
    root_ports: int = Field(ge=2, le=MAX_ROOT_PORTS)
    disks: tuple[str, ...] = Field(default=(), max_length=_MAX_DEVICES)
    nics: tuple[str, ...] = Field(default=(), max_length=_MAX_DEVICES)


class DimmModel(_Strict):
    index: int = Field(ge=0, lt=DIMM_SLOTS)
    size: int = Field(ge=plans.MEMORY_BLOCK_BYTES, le=1 << 44)


class QemuLayout(_Strict):
    """Boot, slots of every disk, NIC and controller, and what was hot-plugged (in plug order)."""

    version: Literal[1] = 1
    boot: BootModel
    slots: dict[str, SlotModel] = Field(max_length=_MAX_DEVICES)
    cpus: tuple[dict[str, int], ...] = Field(default=(), max_length=1024)
    dimms: tuple[DimmModel, ...] = Field(default=(), max_length=DIMM_SLOTS)
    disks: tuple[str, ...] = Field(default=(), max_length=_MAX_DEVICES)
    nics: tuple[str, ...] = Field(default=(), max_length=_MAX_DEVICES)
    links: dict[str, bool] = Field(default_factory=dict, max_length=_MAX_DEVICES)


def _bus_name(parent_bus: str) -> str:
    """``/machine/peripheral/rp3/rp3`` -> ``rp3``: a bus's QOM path ends in its name."""
    return parent_bus.rsplit("/", 1)[-1]


def cpu_position(props: Mapping[str, Any]) -> dict[str, int]:
    """A vCPU slot's place in the topology (its socket, die, core and thread ids; not its NUMA node)."""
    return {k: int(v) for k, v in props.items() if k in _CPU_PROPS}


def layout_from(
    boot: MachineSpec,
    *,
    hotpluggable_cpus: Any,
    memory_devices: Any,
    peripherals: Mapping[str, str],
    parent_buses: Mapping[str, str],
    scsi_addresses: Mapping[str, tuple[int, int]],
    links: Mapping[str, bool],
) -> str:
    """The layout of a running machine booted from ``boot``, from QMP's answers:
    ``query-hotpluggable-cpus``, ``query-memory-devices``, ``qom-list /machine/peripheral``, each
    device's ``parent_bus`` and each SCSI disk's (lun, scsi-id)."""
    prefix = naming.ROOT_PORT_PREFIX
    root_ports = sum(1 for dev in peripherals if dev.startswith(prefix) and dev[len(prefix) :].isdigit())
    present_disks = [n for dev in peripherals if (n := naming.disk_name_of(dev)) is not None]
    present_nics = [n for dev in peripherals if (n := naming.nic_name_of(dev)) is not None]
    boot_disks = [d.name for d in boot.disks if d.name in present_disks]
    boot_nics = [n.name for n in boot.nics if n.name in present_nics]
    slots: dict[str, SlotModel] = {}
    for device, parent in parent_buses.items():
        lun, scsi_id = scsi_addresses.get(device, (None, None))
        slots[device] = SlotModel(bus=_bus_name(parent), lun=lun, scsi_id=scsi_id)
    cpus = [
        cpu_position(slot["props"])
        for slot in hotpluggable_cpus
        if str(slot.get("qom-path", "")).startswith("/machine/peripheral/")
    ]
    layout = QemuLayout(
        boot=BootModel(
            sockets=boot.sockets,
            cores=boot.cores,
            threads=boot.threads,
            max_sockets=boot.max_sockets or boot.sockets,
            memory_bytes=boot.memory_bytes,
            max_memory_bytes=boot.max_memory_bytes,
            machine=boot.machine,
            cpu_model=boot.cpu_model,
            root_ports=root_ports,
            disks=tuple(boot_disks),
            nics=tuple(boot_nics),
        ),
        slots=slots,
        cpus=tuple(sorted(cpus, key=lambda p: tuple(p.get(k, 0) for k in sorted(_CPU_PROPS)))),
        dimms=tuple(DimmModel(index=d.index, size=d.size) for d in plans.dimms(memory_devices)),
        disks=tuple(sorted(set(present_disks) - set(boot_disks))),
        nics=tuple(sorted(set(present_nics) - set(boot_nics))),
        links={nic: up for nic, up in links.items() if nic in present_nics},
    )
    return layout.model_dump_json(exclude_defaults=True)


def _fail(spec: MachineSpec, why: str) -> HypervisorError:
    return HypervisorError(f"{spec.name}: the migration layout {why}")


def _check_names(spec: MachineSpec, layout: QemuLayout) -> None:
    disks = {d.name for d in spec.disks}
    nics = {n.name for n in spec.nics}
    for kind, names, known in (
        ("disk", (*layout.boot.disks, *layout.disks), disks),
        ("interface", (*layout.boot.nics, *layout.nics, *layout.links), nics),
    ):
        for name in names:
            if not re.fullmatch(_NAME, name) or name not in known:
                raise _fail(spec, f"names a {kind} the VMI does not have: {name[:64]!r}")
    for group in (layout.boot.disks + layout.disks, layout.boot.nics + layout.nics):
        if len(set(group)) != len(group):
            raise _fail(spec, "lists a device twice")


def _check_slots(spec: MachineSpec, layout: QemuLayout) -> None:
    devices = {
        *(naming.disk_device_id(d) for d in (*layout.boot.disks, *layout.disks)),
        *(naming.nic_device_id(n) for n in (*layout.boot.nics, *layout.nics)),
        SCSI_CONTROLLER,
        SERIAL_BUS,
    }
    if set(layout.slots) != devices:
        raise _fail(spec, "does not place exactly the devices it lists")
    taken: set[tuple[str, int | None, int | None]] = set()
    for device, slot in layout.slots.items():
        if not _BUS.fullmatch(slot.bus):
            raise _fail(spec, f"puts {device} on an unknown bus {slot.bus[:16]!r}")
        if slot.bus.startswith("rp") and int(slot.bus[2:]) >= layout.boot.root_ports:
            raise _fail(spec, f"puts {device} on root port {slot.bus}, beyond {layout.boot.root_ports}")
        key = (slot.bus, slot.lun, slot.scsi_id)
        if key in taken:
            raise _fail(spec, f"puts two devices in one slot ({slot.bus})")
        taken.add(key)


def _check_bounds(spec: MachineSpec, layout: QemuLayout) -> None:
    """The layout may not give the guest more than its VMI allows: the target host reserves it."""
    boot = layout.boot
    if (boot.cores, boot.threads) != (spec.cores, spec.threads):
        raise _fail(
            spec, f"has {boot.cores} cores x {boot.threads} threads, the VMI {spec.cores} x {spec.threads}"
        )
    if boot.max_sockets > max(spec.max_sockets, spec.sockets):
        raise _fail(spec, f"has room for {boot.max_sockets} sockets, more than the VMI's maximum")
    allowed = max(spec.max_memory_bytes or 0, spec.memory_bytes)
    if max(boot.max_memory_bytes or 0, boot.memory_bytes + sum(d.size for d in layout.dimms)) > allowed:
        raise _fail(spec, f"gives the guest more memory than the VMI's {allowed >> 20} MiB")


def _check_sizes(spec: MachineSpec, layout: QemuLayout) -> None:
    boot = layout.boot
    if not boot.sockets <= boot.max_sockets:
        raise _fail(spec, f"boots {boot.sockets} sockets of at most {boot.max_sockets}")
    if len(layout.cpus) > (boot.max_sockets - boot.sockets) * boot.cores * boot.threads:
        raise _fail(spec, "hot-plugs more vCPUs than the machine has room for")
    for props in layout.cpus:
        if not props or set(props) - _CPU_PROPS or any(not 0 <= v < 4096 for v in props.values()):
            raise _fail(spec, "names a vCPU slot that cannot exist")
    maximum = max(boot.max_memory_bytes or 0, boot.memory_bytes)
    if boot.memory_bytes + sum(d.size for d in layout.dimms) > maximum:
        raise _fail(spec, "plugs more memory than the machine's maximum")
    if any(d.size % plans.MEMORY_BLOCK_BYTES for d in layout.dimms):
        raise _fail(spec, "plugs a DIMM that is not a multiple of 128 MiB")
    if len({d.index for d in layout.dimms}) != len(layout.dimms):
        raise _fail(spec, "plugs two DIMMs with one index")


def parse_layout(text: str, spec: MachineSpec) -> QemuLayout:
    """The layout in ``text``, checked against the target's own ``spec`` (HypervisorError if bad)."""
    try:
        layout = QemuLayout.model_validate_json(text)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise _fail(spec, f"is invalid at {where}: {problem['msg']}") from err
    _check_names(spec, layout)
    _check_slots(spec, layout)
    _check_sizes(spec, layout)
    _check_bounds(spec, layout)
    return layout


def _by_name(items: Iterable[Any], names: Iterable[str]) -> tuple[Any, ...]:
    found = {item.name: item for item in items}
    return tuple(found[name] for name in names)


def incoming_boot(layout: QemuLayout, spec: MachineSpec) -> tuple[MachineSpec, Placement]:
    """The target's boot spec (the source's boot, with the target's paths and identity) and where
    its devices go. Hot-plugged devices are not in it: the driver plugs them before the stream."""
    boot = layout.boot
    disks = _by_name(spec.disks, boot.disks)
    nics = _by_name(spec.nics, boot.nics)
    shell = MachineSpec(name=spec.name, uuid=spec.uuid, sockets=1, disks=disks, nics=nics)
    target = MachineSpec(
        name=spec.name,
        uuid=spec.uuid,
        sockets=boot.sockets,
        cores=boot.cores,
        threads=boot.threads,
        max_sockets=boot.max_sockets,
        memory_bytes=boot.memory_bytes,
        max_memory_bytes=boot.max_memory_bytes,
        machine=boot.machine,
        cpu_model=boot.cpu_model,
        disks=disks,
        nics=nics,
        kernel_boot=spec.kernel_boot,
        spare_root_ports=max(boot.root_ports - boot_root_ports(shell), 0),
    )
    slots = {device: Slot(s.bus, lun=s.lun, scsi_id=s.scsi_id) for device, s in layout.slots.items()}
    return target, Placement(root_ports=boot.root_ports, slots=slots)
