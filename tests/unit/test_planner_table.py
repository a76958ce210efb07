"""docs/rollout.md §2 "Which differences are live", one row per line of the table, under both strategies.

Each row boots a VMI from ``before`` and plans ``after`` against it. Under ``LiveUpdate`` a row's live
changes go live (or wait, with ``WaitingForRestart``, when the row also has a pending one); under
``Stage`` every difference is pending, the live-capable ones with ``StagedByStrategy``. The table must
exercise every rule of ``LIVE_UPDATE_TABLE``, so a new rule without a row here fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from vmplane.api.kubevirt import RolloutStrategy
from vmplane.api.scheduling import (
    Affinity,
    NodeAffinity,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
)
from vmplane.api.vm import ChangeSource, PendingChange, RunStrategy, VirtualMachine
from vmplane.api.vmi import VirtualMachineInstanceSpec
from vmplane.rollout.plan import LiveChange, Plan
from vmplane.rollout.table import LIVE_UPDATE_TABLE, LiveKind
from vmplane.testing.builders import (
    RunningVMI,
    boot,
    config,
    container_disk,
    disk,
    interface,
    network,
    pvc,
    replan,
    toleration,
    vm_spec,
)

# The upstream texts (KubeVirt's RestartRequired messages), written out so a drifting constant fails here.
NON_LIVE = "a non-live-updatable field was changed in the template spec"
STAGED = "changes are staged until the next restart: vmRolloutStrategy is Stage"
WAITING = "live-updatable, but no change is propagated while a restart is required"
SOCKETS_ABOVE_MAX = "CPU sockets updated in template spec to a value higher than what's available"
SOCKETS_REDUCED = "Reduction of CPU socket count requires a restart"
MEMORY_ABOVE_MAX = "memory hotplug not supported, Guest memory is greater than the configured maxGuest memory"
MEMORY_BELOW_BOOT = "memory updated in template spec to a value lower than what the VM started with"
HOTPLUG_UNAVAILABLE = (
    "memory updated in template spec. Memory-hotplug is not available for this VM configuration"
)
INTERFACE_REMOVED = (
    "a non-live-updatable field was changed in the template spec: an interface can only be "
    "hot-unplugged by setting its state to absent"
)

MAC = "02:00:00:00:00:01"
# Boots with sockets 2 (maxSockets 8 from the ratio 4), guest 2Gi (maxGuest 8Gi, guestAtBoot 2Gi), a
# containerDisk root, a hotpluggable data PVC, a CD-ROM drive with a hotpluggable DataVolume in it, the
# pod network and a secondary bridge NIC.
BASE: dict[str, Any] = {
    "sockets": 2,
    "guest": "2Gi",
    "disks": [disk("root"), disk("data"), disk("cd", cdrom=True)],
    "volumes": [container_disk("root"), pvc("data", hotpluggable=True), pvc("cd", hotpluggable=True)],
    "interfaces": [interface("default", binding="masquerade"), interface("sec", model="virtio", mac=MAC)],
    "networks": [network("default"), network("sec", nad="br-net")],
}


def spec(**overrides: Any) -> VirtualMachineInstanceSpec:
    """The base template with some fields replaced."""
    return vm_spec(**{**BASE, **overrides})


def base_with(key: str, *items: Any, drop: str | None = None) -> list[Any]:
    """``BASE[key]`` without the element named ``drop`` and with ``items`` appended."""
    return [i for i in BASE[key] if i.name != drop] + list(items)


def swapped(key: str, item: Any) -> list[Any]:
    """``BASE[key]`` with the element of the same name replaced by ``item``."""
    return [item if i.name == item.name else i for i in BASE[key]]


@dataclass(frozen=True)
class Change:
    """One expected difference: its VMI-spec path, both values, and live (``kind``) or pending."""

    path: str
    running: Any
    desired: Any
    kind: LiveKind | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def live(self) -> bool:
        return self.kind is not None


def live(path: str, running: Any, desired: Any, kind: LiveKind) -> Change:
    return Change(path, running, desired, kind=kind)


def pending(path: str, running: Any, desired: Any, reason: str, message: str) -> Change:
    return Change(path, running, desired, reason=reason, message=message)


@dataclass(frozen=True)
class Row:
    """Boot from ``before`` (then hotplug to ``hotplugged`` if given), plan ``after``."""

    id: str
    before: VirtualMachineInstanceSpec
    after: VirtualMachineInstanceSpec
    changes: tuple[Change, ...]
    hotplugged: VirtualMachineInstanceSpec | None = None


ZONE_A = Affinity(
    node_affinity=NodeAffinity(
        required_during_scheduling_ignored_during_execution=NodeSelector(
            node_selector_terms=[
                NodeSelectorTerm(
                    match_expressions=[
                        NodeSelectorRequirement(key="zone", operator="In", values=["a"]),
                    ]
                )
            ]
        )
    )
)

ROWS: tuple[Row, ...] = (
    # domain.cpu.sockets
    Row(
        "cpu-sockets-increase-within-max",
        spec(),
        spec(sockets=8),
        (live("domain.cpu.sockets", 2, 8, LiveKind.CPU),),
    ),
    Row(
        "cpu-sockets-increase-above-max",
        spec(),
        spec(sockets=9),
        (pending("domain.cpu.sockets", 2, 9, "CPUSocketsAboveMax", SOCKETS_ABOVE_MAX),),
    ),
    Row(
        "cpu-sockets-decrease",
        spec(),
        spec(sockets=1),
        (pending("domain.cpu.sockets", 2, 1, "CPUSocketsReduced", SOCKETS_REDUCED),),
    ),
    # domain.memory.guest
    Row(
        "memory-increase-up-to-max-guest",
        spec(),
        spec(guest="8Gi"),
        (live("domain.memory.guest", "2Gi", "8Gi", LiveKind.MEMORY),),
    ),
    Row(
        "memory-decrease-not-below-guest-at-boot",
        spec(),
        spec(guest="3Gi"),
        (live("domain.memory.guest", "4Gi", "3Gi", LiveKind.MEMORY),),
        hotplugged=spec(guest="4Gi"),
    ),
    Row(
        "memory-decrease-to-guest-at-boot",
        spec(),
        spec(guest="2Gi"),
        (live("domain.memory.guest", "4Gi", "2Gi", LiveKind.MEMORY),),
        hotplugged=spec(guest="4Gi"),
    ),
    Row(
        "memory-increase-above-max-guest",
        spec(),
        spec(guest="10Gi"),
        (pending("domain.memory.guest", "2Gi", "10Gi", "MemoryAboveMax", MEMORY_ABOVE_MAX),),
    ),
    Row(
        "memory-decrease-below-guest-at-boot",
        spec(),
        spec(guest="1Gi"),
        (pending("domain.memory.guest", "2Gi", "1Gi", "MemoryBelowBoot", MEMORY_BELOW_BOOT),),
    ),
    Row(
        "memory-hotplug-unavailable-guest-below-1Gi",
        spec(guest="512Mi"),
        spec(guest="768Mi"),
        (pending("domain.memory.guest", "512Mi", "768Mi", "HotplugUnavailable", HOTPLUG_UNAVAILABLE),),
    ),
    Row(
        # Below 1Gi the new template has no hotplug headroom; that ceiling is not a change of its own.
        "memory-hotplug-unavailable-decrease-below-1Gi",
        spec(),
        spec(guest="512Mi"),
        (
            pending(
                "domain.memory.guest",
                "2Gi",
                "512Mi",
                "HotplugUnavailable",
                "memory hotplug not supported, "
                "Memory hotplug is only available for VMs with at least 1Gi of guest memory",
            ),
        ),
    ),
    Row(
        # Quantities compare by value, as upstream's semantic equality does.
        "memory-same-value-in-other-units",
        spec(guest="2Gi", requests={"memory": "2Gi", "cpu": "1"}),
        spec(guest="2048Mi", requests={"memory": "2147483648", "cpu": "1000m"}),
        (),
    ),
    # nodeSelector, affinity, tolerations
    Row(
        "node-selector-added",
        spec(),
        spec(node_selector={"zone": "a"}),
        (live("nodeSelector", None, {"zone": "a"}, LiveKind.PLACEMENT),),
    ),
    Row(
        "node-selector-changed",
        spec(node_selector={"zone": "a"}),
        spec(node_selector={"zone": "b"}),
        (live("nodeSelector", {"zone": "a"}, {"zone": "b"}, LiveKind.PLACEMENT),),
    ),
    Row(
        "node-selector-removed",
        spec(node_selector={"zone": "a"}),
        spec(),
        (live("nodeSelector", {"zone": "a"}, None, LiveKind.PLACEMENT),),
    ),
    Row(
        "affinity-added",
        spec(),
        spec(affinity=ZONE_A),
        (live("affinity", None, ZONE_A.to_wire(), LiveKind.PLACEMENT),),
    ),
    Row(
        "tolerations-appended",
        spec(tolerations=[toleration("t1")]),
        spec(tolerations=[toleration("t1"), toleration("t2", value="x")]),
        (
            live(
                "tolerations",
                [toleration("t1").to_wire()],
                [toleration("t1").to_wire(), toleration("t2", value="x").to_wire()],
                LiveKind.PLACEMENT,
            ),
        ),
    ),
    Row(
        "tolerations-removed",
        spec(tolerations=[toleration("t1")]),
        spec(),
        (live("tolerations", [toleration("t1").to_wire()], None, LiveKind.PLACEMENT),),
    ),
    # disks + volumes
    Row(
        "hotpluggable-disk-and-volume-added",
        spec(),
        spec(
            disks=base_with("disks", disk("extra", bus="scsi")),
            volumes=base_with("volumes", pvc("extra", hotpluggable=True)),
        ),
        (
            live(
                "domain.devices.disks[name=extra]", None, disk("extra", bus="scsi").to_wire(), LiveKind.DISK
            ),
            live("volumes[name=extra]", None, pvc("extra", hotpluggable=True).to_wire(), LiveKind.DISK),
        ),
    ),
    Row(
        "hotpluggable-disk-and-volume-removed",
        spec(),
        spec(disks=base_with("disks", drop="data"), volumes=base_with("volumes", drop="data")),
        (
            live("domain.devices.disks[name=data]", disk("data").to_wire(), None, LiveKind.DISK),
            live("volumes[name=data]", pvc("data", hotpluggable=True).to_wire(), None, LiveKind.DISK),
        ),
    ),
    Row(
        "hotpluggable-volume-claim-swapped",
        spec(),
        spec(volumes=swapped("volumes", pvc("data", claim="other", hotpluggable=True))),
        (
            live(
                "volumes[name=data]",
                pvc("data", hotpluggable=True).to_wire(),
                pvc("data", claim="other", hotpluggable=True).to_wire(),
                LiveKind.DISK,
            ),
        ),
    ),
    Row(
        "cdrom-media-swapped",
        spec(),
        spec(volumes=swapped("volumes", pvc("cd", claim="iso-2", hotpluggable=True))),
        (
            live(
                "volumes[name=cd]",
                pvc("cd", hotpluggable=True).to_wire(),
                pvc("cd", claim="iso-2", hotpluggable=True).to_wire(),
                LiveKind.DISK,
            ),
        ),
    ),
    Row(
        "cdrom-media-ejected",
        spec(),
        spec(volumes=base_with("volumes", drop="cd")),
        (live("volumes[name=cd]", pvc("cd", hotpluggable=True).to_wire(), None, LiveKind.DISK),),
    ),
    Row(
        "cdrom-media-injected",
        spec(volumes=base_with("volumes", drop="cd")),
        spec(),
        (live("volumes[name=cd]", None, pvc("cd", hotpluggable=True).to_wire(), LiveKind.DISK),),
    ),
    Row(
        "non-hotpluggable-volume-changed",
        spec(),
        spec(volumes=swapped("volumes", container_disk("root", image="quay.io/containerdisks/debian"))),
        (
            pending(
                "volumes[name=root]",
                container_disk("root").to_wire(),
                container_disk("root", image="quay.io/containerdisks/debian").to_wire(),
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
        ),
    ),
    Row(
        "non-hotpluggable-disk-and-volume-added",
        spec(),
        spec(disks=base_with("disks", disk("scratch")), volumes=base_with("volumes", pvc("scratch"))),
        (
            pending(
                "domain.devices.disks[name=scratch]",
                None,
                disk("scratch").to_wire(),
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
            pending(
                "volumes[name=scratch]", None, pvc("scratch").to_wire(), "NonLiveUpdatableChange", NON_LIVE
            ),
        ),
    ),
    Row(
        "non-hotpluggable-disk-and-volume-removed",
        spec(),
        spec(disks=base_with("disks", drop="root"), volumes=base_with("volumes", drop="root")),
        (
            pending(
                "domain.devices.disks[name=root]",
                disk("root").to_wire(),
                None,
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
            pending(
                "volumes[name=root]",
                container_disk("root").to_wire(),
                None,
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
        ),
    ),
    Row(
        "hotplugged-disk-bus-changed",
        spec(),
        spec(disks=swapped("disks", disk("data", bus="scsi"))),
        (
            pending(
                "domain.devices.disks[name=data]",
                disk("data").to_wire(),
                disk("data", bus="scsi").to_wire(),
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
        ),
    ),
    Row(
        # The drive goes with its medium; the medium alone could go live, so it waits for the drive.
        "cdrom-disk-removed",
        spec(),
        spec(disks=base_with("disks", drop="cd"), volumes=base_with("volumes", drop="cd")),
        (
            pending(
                "domain.devices.disks[name=cd]",
                disk("cd", cdrom=True).to_wire(),
                None,
                "CDRomDiskRemoved",
                NON_LIVE,
            ),
            live("volumes[name=cd]", pvc("cd", hotpluggable=True).to_wire(), None, LiveKind.DISK),
        ),
    ),
    # interfaces + networks
    Row(
        "nic-added",
        spec(),
        spec(
            interfaces=base_with("interfaces", interface("third", binding="sriov")),
            networks=base_with("networks", network("third", nad="sriov-net")),
        ),
        (
            live(
                "domain.devices.interfaces[name=third]",
                None,
                interface("third", binding="sriov").to_wire(),
                LiveKind.INTERFACE,
            ),
            live(
                "networks[name=third]", None, network("third", nad="sriov-net").to_wire(), LiveKind.INTERFACE
            ),
        ),
    ),
    Row(
        "nic-state-absent",
        spec(),
        spec(interfaces=swapped("interfaces", interface("sec", model="virtio", mac=MAC, state="absent"))),
        (
            live(
                "domain.devices.interfaces[name=sec]",
                interface("sec", model="virtio", mac=MAC).to_wire(),
                interface("sec", model="virtio", mac=MAC, state="absent").to_wire(),
                LiveKind.INTERFACE,
            ),
        ),
    ),
    Row(
        "nic-absent-then-removed",
        spec(interfaces=swapped("interfaces", interface("sec", model="virtio", mac=MAC, state="absent"))),
        spec(interfaces=base_with("interfaces", drop="sec"), networks=base_with("networks", drop="sec")),
        (
            live(
                "domain.devices.interfaces[name=sec]",
                interface("sec", model="virtio", mac=MAC, state="absent").to_wire(),
                None,
                LiveKind.INTERFACE,
            ),
            live("networks[name=sec]", network("sec", nad="br-net").to_wire(), None, LiveKind.INTERFACE),
        ),
    ),
    Row(
        "nic-state-down",
        spec(),
        spec(interfaces=swapped("interfaces", interface("sec", model="virtio", mac=MAC, state="down"))),
        (
            live(
                "domain.devices.interfaces[name=sec]",
                interface("sec", model="virtio", mac=MAC).to_wire(),
                interface("sec", model="virtio", mac=MAC, state="down").to_wire(),
                LiveKind.INTERFACE,
            ),
        ),
    ),
    Row(
        "nic-state-up",
        spec(interfaces=swapped("interfaces", interface("sec", model="virtio", mac=MAC, state="down"))),
        spec(interfaces=swapped("interfaces", interface("sec", model="virtio", mac=MAC, state="up"))),
        (
            live(
                "domain.devices.interfaces[name=sec]",
                interface("sec", model="virtio", mac=MAC, state="down").to_wire(),
                interface("sec", model="virtio", mac=MAC, state="up").to_wire(),
                LiveKind.INTERFACE,
            ),
        ),
    ),
    *(
        Row(
            f"nic-{what}-changed",
            spec(),
            spec(interfaces=swapped("interfaces", changed)),
            (
                pending(
                    "domain.devices.interfaces[name=sec]",
                    interface("sec", model="virtio", mac=MAC).to_wire(),
                    changed.to_wire(),
                    "NonLiveUpdatableChange",
                    NON_LIVE,
                ),
            ),
        )
        for what, changed in (
            ("model", interface("sec", model="e1000", mac=MAC)),
            ("mac", interface("sec", model="virtio", mac="02:00:00:00:00:02")),
            ("binding", interface("sec", binding="sriov", model="virtio", mac=MAC)),
        )
    ),
    Row(
        "nic-network-source-changed",
        spec(),
        spec(networks=swapped("networks", network("sec", nad="other-net"))),
        (
            pending(
                "networks[name=sec]",
                network("sec", nad="br-net").to_wire(),
                network("sec", nad="other-net").to_wire(),
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
        ),
    ),
    Row(
        "nic-removed-without-absent",
        spec(),
        spec(interfaces=base_with("interfaces", drop="sec"), networks=base_with("networks", drop="sec")),
        (
            pending(
                "domain.devices.interfaces[name=sec]",
                interface("sec", model="virtio", mac=MAC).to_wire(),
                None,
                "InterfaceRemovedWithoutAbsent",
                INTERFACE_REMOVED,
            ),
            pending(
                "networks[name=sec]",
                network("sec", nad="br-net").to_wire(),
                None,
                "NonLiveUpdatableChange",
                NON_LIVE,
            ),
        ),
    ),
    # anything else in spec.template.spec
    Row(
        "hostname-changed",
        spec(hostname="a"),
        spec(hostname="b"),
        (pending("hostname", "a", "b", "NonLiveUpdatableChange", NON_LIVE),),
    ),
    Row(
        "cpu-cores-changed",
        spec(cores=2),
        spec(cores=4),
        (pending("domain.cpu.cores", 2, 4, "NonLiveUpdatableChange", NON_LIVE),),
    ),
    Row(
        "cpu-model-changed",
        spec(),
        spec(cpu_model="Skylake-Server"),
        (pending("domain.cpu.model", None, "Skylake-Server", "NonLiveUpdatableChange", NON_LIVE),),
    ),
    Row(
        "max-sockets-set-explicitly",
        spec(),
        spec(max_sockets=16),
        (pending("domain.cpu.maxSockets", 8, 16, "NonLiveUpdatableChange", NON_LIVE),),
    ),
    Row(
        "memory-requests-changed",
        spec(requests={"memory": "2Gi"}),
        spec(requests={"memory": "3Gi"}),
        (pending("domain.resources.requests.memory", "2Gi", "3Gi", "NonLiveUpdatableChange", NON_LIVE),),
    ),
    Row(
        "eviction-strategy-changed",
        spec(),
        spec(eviction_strategy="LiveMigrate"),
        (pending("evictionStrategy", None, "LiveMigrate", "NonLiveUpdatableChange", NON_LIVE),),
    ),
)

STRATEGIES = (RolloutStrategy.LIVE_UPDATE, RolloutStrategy.STAGE)
CASES = [
    pytest.param(row, strategy, id=f"{row.id}-{strategy.value}") for row in ROWS for strategy in STRATEGIES
]


def booted(row: Row, strategy: RolloutStrategy) -> RunningVMI:
    """The VMI booted from ``row.before`` under ``strategy`` (hotplugged to ``row.hotplugged`` if given)."""
    vmi = boot(row.before, config(strategy=strategy))
    if row.hotplugged is None:
        return vmi
    hotplug = replan(vmi, row.hotplugged, config(strategy="LiveUpdate"))
    assert hotplug.live
    assert not hotplug.pending
    return RunningVMI(hotplug.next_running, vmi.status)


def plan_row(row: Row, strategy: RolloutStrategy) -> Plan:
    return replan(booted(row, strategy), row.after, config(strategy=strategy))


def as_pending(change: Change, reason: str, message: str) -> PendingChange:
    return PendingChange(
        path="spec.template.spec." + change.path,
        running=change.running,
        desired=change.desired,
        reason=reason,
        message=message,
        source=ChangeSource.TEMPLATE,
    )


def expected(row: Row, strategy: RolloutStrategy) -> tuple[tuple[LiveChange, ...], tuple[PendingChange, ...]]:
    """docs/rollout.md §2: under Stage every difference is pending; under LiveUpdate live-capable ones
    wait only while a non-live one is pending."""
    live_capable = [c for c in row.changes if c.live]
    blocking = [as_pending(c, c.reason or "", c.message or "") for c in row.changes if not c.live]
    if strategy is RolloutStrategy.STAGE:
        staged = [
            as_pending(c, "StagedByStrategy", STAGED)
            if c.live
            else as_pending(c, c.reason or "", c.message or "")
            for c in row.changes
        ]
        return (), tuple(staged)
    if blocking:
        return (), tuple(blocking + [as_pending(c, "WaitingForRestart", WAITING) for c in live_capable])
    changes = tuple(
        LiveChange(c.path, c.running, c.desired, c.kind, ChangeSource.TEMPLATE)
        for c in live_capable
        if c.kind is not None
    )
    return changes, ()


@pytest.mark.parametrize(("row", "strategy"), CASES)
def test_live_update_table(row: Row, strategy: RolloutStrategy) -> None:
    result = plan_row(row, strategy)
    want_live, want_pending = expected(row, strategy)

    assert result.live == want_live
    assert result.pending == want_pending
    assert (result.restart_required is not None) == bool(want_pending)
    if want_pending:
        assert result.restart_required is not None
        assert result.restart_required.reason == want_pending[0].reason


@pytest.mark.parametrize(("row", "strategy"), CASES)
def test_next_running_carries_exactly_the_live_changes(row: Row, strategy: RolloutStrategy) -> None:
    """Planning again from ``next_running`` finds nothing left to apply; without live changes the
    running spec stays as it is."""
    vmi = booted(row, strategy)
    result = replan(vmi, row.after, config(strategy=strategy))
    if not result.live:
        assert result.next_running == vmi.spec
        return
    again = replan(RunningVMI(result.next_running, vmi.status), row.after, config(strategy=strategy))
    assert again.empty
    assert again.restart_required is None


def test_every_rule_of_the_live_update_table_has_a_row() -> None:
    covered = {
        rule.pattern
        for rule in LIVE_UPDATE_TABLE
        for row in ROWS
        for c in row.changes
        if rule.matches(c.path)
    }
    missing = [rule.pattern for rule in LIVE_UPDATE_TABLE if rule.pattern not in covered]
    assert not missing, f"rules of LIVE_UPDATE_TABLE without a row here: {missing}"


def test_every_rule_with_a_restart_outcome_has_a_pending_row() -> None:
    """Placement rules are always live; every other rule must show a pending outcome as well."""
    always_live = {LiveKind.PLACEMENT}
    with_pending = {
        rule.pattern
        for rule in LIVE_UPDATE_TABLE
        for row in ROWS
        for c in row.changes
        if rule.matches(c.path) and not c.live
    }
    missing = [
        r.pattern for r in LIVE_UPDATE_TABLE if r.kind not in always_live and r.pattern not in with_pending
    ]
    assert not missing, f"rules without a pending row: {missing}"


def test_anything_else_matches_no_rule() -> None:
    """The rows for "anything else" really are outside the table (no rule claims them)."""
    others = ("hostname", "domain.cpu.cores", "domain.cpu.model", "domain.cpu.maxSockets", "evictionStrategy")
    for path in others:
        assert not any(rule.matches(path) for rule in LIVE_UPDATE_TABLE), path


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.value)
def test_template_metadata_and_run_strategy_never_pending(strategy: RolloutStrategy) -> None:
    """Only ``spec.template.spec`` is planned: labels, annotations and runStrategy never need a restart."""
    before = VirtualMachine.model_validate(
        {
            "metadata": {"name": "demo"},
            "spec": {
                "runStrategy": "Always",
                "template": {"metadata": {"labels": {"app": "demo"}}, "spec": spec().to_wire()},
            },
        }
    )
    after = before.model_copy(
        update={
            "spec": before.spec.model_copy(
                update={
                    "run_strategy": RunStrategy.MANUAL,
                    "template": VirtualMachine.model_validate(
                        {
                            "spec": {
                                "template": {
                                    "metadata": {
                                        "labels": {"app": "demo", "tier": "db"},
                                        "annotations": {"descheduler.alpha.kubernetes.io/evict": "true"},
                                    },
                                    "spec": spec().to_wire(),
                                }
                            }
                        }
                    ).spec.template,
                }
            )
        }
    )
    assert after.spec.template.metadata != before.spec.template.metadata
    assert after.spec.run_strategy != before.spec.run_strategy

    cfg = config(strategy=strategy)
    result = replan(boot(before.spec.template.spec, cfg), after.spec.template.spec, cfg)

    assert result.empty
    assert result.restart_required is None
