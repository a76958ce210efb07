"""KubeVirt's own test scenarios (docs/rollout.md §6) on defaulting, validation and the
restart decision, one test each, named after the scenario's number and upstream name.

Unless a scenario says otherwise it runs under ``LiveUpdate``, as upstream's do. Where vmplane differs
from upstream on purpose (docs/rollout.md §2 wins: the default strategy is ``Stage``; every VMI gets hotplug
headroom whatever the strategy; every pending change is listed with its own reason; reverting the
template clears the condition), the test asserts vmplane's behaviour and its docstring says what
upstream does.

Not here: scenarios about patching the VMI, pod resources, migrations and the workload updater
(s03, s04, s07-s09, s18-s19, s28, s37-s38, s43, s46-s47, s54-s56, s61-s62) belong to the controller
and agent; s15 (memory hotplug needs a migratable VMI) has no counterpart, because vmplane hot-plugs
into the running QEMU instead of migrating; s20-s21 need instancetypes, which vmplane does not have.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vmplane.api.errors import FieldCause
from vmplane.api.kubevirt import KubeVirtConfiguration, RolloutStrategy
from vmplane.api.meta import ObjectMeta
from vmplane.api.quantity import Quantity
from vmplane.api.scheduling import (
    Affinity,
    LabelSelector,
    PodAffinity,
    PodAffinityTerm,
)
from vmplane.api.validation import validate_vm
from vmplane.api.vm import ChangeSource, VirtualMachine, VirtualMachineSpec, VirtualMachineTemplate
from vmplane.api.vmi import CPUTopology, HotplugFailure, MemoryStatus, VirtualMachineInstanceSpec
from vmplane.rollout.effective import Provenance, effective_spec
from vmplane.rollout.plan import LiveChange, Plan
from vmplane.rollout.table import LiveKind
from vmplane.testing.builders import (
    RunningVMI,
    boot,
    condition,
    config,
    container_disk,
    disk,
    interface,
    network,
    pvc,
    replan,
    running_vmi,
    toleration,
    vm_spec,
)

LIVE = config(strategy="LiveUpdate")
STAGE = config(strategy="Stage")
DEFAULT = config()

NON_LIVE = "a non-live-updatable field was changed in the template spec"
STAGED = "changes are staged until the next restart: vmRolloutStrategy is Stage"
SOCKETS_ABOVE_MAX = "CPU sockets updated in template spec to a value higher than what's available"
SOCKETS_REDUCED = "Reduction of CPU socket count requires a restart"
ARM = "ARM doesn't support CPU hotplug"
MEMORY_BELOW_BOOT = "memory updated in template spec to a value lower than what the VM started with"
HOTPLUG_UNAVAILABLE = (
    "memory updated in template spec. Memory-hotplug is not available for this VM configuration"
)
MEMORY_HOTPLUG_FAILED = (
    "memory updated in template spec. Memory-hotplug failed and is not available for this VM configuration"
)
TOO_MANY_SOCKETS = "Number of sockets in CPU topology is greater than the maximum sockets allowed"
SOCKETS_FIELD = "spec.template.spec.domain.cpu.sockets"
GUEST_FIELD = "spec.template.spec.domain.memory.guest"

STRATEGIES = [
    pytest.param(DEFAULT, id="nil"),
    pytest.param(STAGE, id="Stage"),
    pytest.param(LIVE, id="LiveUpdate"),
]


def reasons(result: Plan) -> list[tuple[str, str]]:
    """``(path, reason)`` of every pending change."""
    return [(change.path.removeprefix("spec.template.spec."), change.reason) for change in result.pending]


def only_pending(result: Plan) -> tuple[str, str]:
    assert len(result.pending) == 1, result.pending
    assert result.restart_required is not None
    change = result.pending[0]
    return change.reason, change.message


def vm(template: VirtualMachineInstanceSpec) -> VirtualMachine:
    return VirtualMachine(
        metadata=ObjectMeta(name="testvm", namespace="default"),
        spec=VirtualMachineSpec(template=VirtualMachineTemplate(spec=template)),
    )


def cpu_of(spec: VirtualMachineInstanceSpec) -> Any:
    assert spec.domain.cpu is not None
    return spec.domain.cpu


# ---------------------------------------------------------------------------------- maxSockets, maxGuest


def test_s01_honours_max_cpu_sockets_from_vm_spec() -> None:
    effective = effective_spec(vm_spec(max_sockets=24), LIVE)

    assert cpu_of(effective.spec).max_sockets == 24
    assert effective.source_of("domain.cpu.maxSockets") is Provenance.TEMPLATE


def test_s02_prefers_max_cpu_sockets_from_vm_spec_rather_than_from_cluster_config() -> None:
    effective = effective_spec(vm_spec(max_sockets=24), config(strategy="LiveUpdate", max_cpu_sockets=48))

    assert cpu_of(effective.spec).max_sockets == 24


def test_s06_honours_and_prefers_max_guest_from_vm_spec_rather_than_from_cluster_config() -> None:
    effective = effective_spec(
        vm_spec(guest="64Mi", max_guest="4Gi"), config(strategy="LiveUpdate", max_guest="8Gi")
    )

    assert effective.spec.domain.memory is not None
    assert effective.spec.domain.memory.max_guest == Quantity.parse("4Gi")


# --------------------------------------------------------------------------------------------- CPU


def test_s05_raises_restart_required_for_arm64_vm() -> None:
    vmi = boot(vm_spec(sockets=2, max_sockets=4, architecture="arm64"), LIVE)

    result = replan(vmi, vm_spec(sockets=3, max_sockets=4, architecture="arm64"), LIVE)

    assert only_pending(result) == ("CPUHotplugUnsupported", ARM)


def test_s22_restart_required_should_not_call_update_if_the_condition_is_set() -> None:
    """The plan is a value: planning never changes the VM, and the increase above the cluster-wide
    maxSockets waits for a restart."""
    cfg = config(strategy="LiveUpdate", max_cpu_sockets=8)
    vmi = boot(vm_spec(sockets=8), cfg)
    template = vm_spec(sockets=10)

    result = replan(vmi, template, cfg)

    assert only_pending(result) == ("CPUSocketsAboveMax", SOCKETS_ABOVE_MAX)
    assert result.next_running == vmi.spec
    assert template == vm_spec(sockets=10)


def test_s23_restart_required_should_appear_when_changing_a_non_live_updatable_field() -> None:
    vmi = boot(vm_spec(hostname="a"), LIVE)

    result = replan(vmi, vm_spec(hostname="b"), LIVE)

    assert only_pending(result) == ("NonLiveUpdatableChange", NON_LIVE)
    assert (result.pending[0].running, result.pending[0].desired) == ("a", "b")


def test_s24_restart_required_when_sockets_go_above_cluster_wide_max_sockets() -> None:
    cfg = config(strategy="LiveUpdate", max_cpu_sockets=8)
    vmi = boot(vm_spec(sockets=8), cfg)
    assert cpu_of(vmi.spec).max_sockets == 8

    result = replan(vmi, vm_spec(sockets=10), cfg)

    assert only_pending(result) == ("CPUSocketsAboveMax", SOCKETS_ABOVE_MAX)


def test_s25_restart_required_when_guest_memory_goes_above_cluster_wide_max_guest() -> None:
    """Upstream's unit test bypasses the webhook to give the VMI maxGuest 256Mi; through defaulting (as
    upstream's webhook does too) a guest below 1Gi gets no maxGuest at all, so the increase needs a
    restart because memory hotplug is unavailable. Upstream asserts only that the condition is set."""
    cfg = config(strategy="LiveUpdate", max_guest="256Mi")
    vmi = boot(vm_spec(guest="256Mi"), cfg)

    result = replan(vmi, vm_spec(guest="257Mi"), cfg)

    assert result.restart_required is not None
    assert only_pending(result) == ("HotplugUnavailable", HOTPLUG_UNAVAILABLE)


def test_s26_restart_required_when_vm_sockets_count_is_reduced() -> None:
    vmi = boot(vm_spec(sockets=2), LIVE)

    result = replan(vmi, vm_spec(sockets=1), LIVE)

    assert only_pending(result) == ("CPUSocketsReduced", SOCKETS_REDUCED)


@pytest.mark.parametrize("cfg", STRATEGIES)
def test_s27_restart_required_when_changing_a_live_updatable_field(cfg: KubeVirtConfiguration) -> None:
    """Upstream: no condition with strategy nil (its default is LiveUpdate). vmplane's default is Stage,
    so nil stages the change like Stage does."""
    vmi = boot(vm_spec(sockets=2, max_sockets=8), cfg)

    result = replan(vmi, vm_spec(sockets=4, max_sockets=8), cfg)

    if cfg.rollout_strategy is RolloutStrategy.LIVE_UPDATE:
        assert result.restart_required is None
        assert result.live == (LiveChange("domain.cpu.sockets", 2, 4, LiveKind.CPU, ChangeSource.TEMPLATE),)
        assert cpu_of(result.next_running).sockets == 4
    else:
        assert only_pending(result) == ("StagedByStrategy", STAGED)
        assert result.live == ()


def test_s45_plugging_vcpus_then_changing_cores_requires_a_restart_which_clears_it() -> None:
    """F-cpu [test_id:10811]: sockets 1→2 is hot-plugged; cores 2→4 then needs a restart; after the
    restart the condition is gone."""
    vmi = boot(vm_spec(sockets=1, cores=2, max_sockets=2), LIVE)

    plugged = replan(vmi, vm_spec(sockets=2, cores=2, max_sockets=2), LIVE)
    assert plugged.restart_required is None
    assert [c.path for c in plugged.live] == ["domain.cpu.sockets"]
    vmi = RunningVMI(
        plugged.next_running,
        vmi.status.model_copy(update={"current_cpu_topology": CPUTopology(sockets=2, cores=2, threads=1)}),
    )

    cores = replan(vmi, vm_spec(sockets=2, cores=4, max_sockets=2), LIVE)
    assert only_pending(cores) == ("NonLiveUpdatableChange", NON_LIVE)

    restarted = boot(vm_spec(sockets=2, cores=4, max_sockets=2), LIVE)
    assert replan(restarted, vm_spec(sockets=2, cores=4, max_sockets=2), LIVE).restart_required is None


def test_s48_starts_with_requests_without_topology_and_with_sockets_above_cluster_max() -> None:
    """F-cpu "with requests without topology" and "with Kubevirt CR declaring MaxCpuSockets"."""
    from_request = effective_spec(
        vm_spec(sockets=None, cores=None, threads=None, requests={"cpu": "5000m"}), LIVE
    )
    assert (cpu_of(from_request.spec).sockets, cpu_of(from_request.spec).max_sockets) == (5, 20)

    above_cluster = effective_spec(vm_spec(sockets=3), config(strategy="LiveUpdate", max_cpu_sockets=2))
    assert cpu_of(above_cluster.spec).max_sockets == 3


def test_s57_should_set_restart_required_when_changing_any_spec_field() -> None:
    """F-ro [test_id:11207], Stage."""
    template = vm_spec(sockets=1, cores=2, max_sockets=2)
    vmi = boot(template, STAGE)

    result = replan(vmi, vm_spec(sockets=2, cores=2, max_sockets=2), STAGE)

    assert only_pending(result) == ("StagedByStrategy", STAGED)


# ------------------------------------------------------------------------------------------ memory


def test_s10_should_not_patch_vmi_if_guest_memory_did_not_change() -> None:
    vmi = boot(vm_spec(guest="1Gi"), LIVE)

    result = replan(vmi, vm_spec(guest="1Gi"), LIVE)

    assert result.empty
    assert result.next_running == vmi.spec


def test_s11_should_set_restart_required_if_the_memory_decreased_from_start() -> None:
    vmi = boot(vm_spec(guest="2Gi", max_guest="4Gi"), LIVE)

    result = replan(vmi, vm_spec(guest="1Gi", max_guest="4Gi"), LIVE)

    assert only_pending(result) == ("MemoryBelowBoot", MEMORY_BELOW_BOOT)


def test_s12_should_set_restart_required_if_vm_does_not_support_memory_hotplug() -> None:
    vmi = boot(vm_spec(guest="2Gi", max_guest="4Gi", architecture="risc-v"), LIVE)

    result = replan(vmi, vm_spec(guest="4Gi", max_guest="4Gi", architecture="risc-v"), LIVE)

    assert only_pending(result) == (
        "HotplugUnavailable",
        "memory hotplug not supported, Memory hotplug is only available for x86_64 VMs",
    )
    assert result.next_running == vmi.spec


def test_s13_should_set_restart_required_if_memory_hotplug_failed() -> None:
    """Upstream sets the condition on every sync while the VMI's ``HotMemoryChange`` is False, even if
    the template goes back to the VMI's value; in vmplane editing the template to what the guest has
    clears it (docs/rollout.md §2: revert clears)."""
    vmi = boot(vm_spec(guest="1Gi"), LIVE)
    # Upstream's record is the condition; vmplane's agent writes it with the typed record it reads back.
    status = vmi.status.model_copy(
        update={
            "conditions": [condition("HotMemoryChange", status="False")],
            "hotplug_failures": [HotplugFailure(path="domain.memory.guest")],
        }
    )

    result = replan(vmi, vm_spec(guest="2Gi"), LIVE, status=status)

    assert only_pending(result) == ("HotplugFailed", MEMORY_HOTPLUG_FAILED)
    assert (result.pending[0].running, result.pending[0].desired) == ("1Gi", "2Gi")
    assert result.next_running == vmi.spec
    assert replan(vmi, vm_spec(guest="1Gi"), LIVE, status=status).restart_required is None


def test_s14_should_set_restart_required_if_memory_hotplug_is_incompatible_with_the_vm_configuration() -> (
    None
):
    """The VMI has no maxGuest: the cluster's maxGuest is below the guest, so defaulting gave none."""
    cfg = config(strategy="LiveUpdate", max_guest="512Mi")
    vmi = boot(vm_spec(guest="1Gi"), cfg)
    assert vmi.spec.domain.memory is not None
    assert vmi.spec.domain.memory.max_guest is None

    result = replan(vmi, vm_spec(guest="2Gi"), cfg)

    assert only_pending(result) == ("HotplugUnavailable", HOTPLUG_UNAVAILABLE)


def test_s49_should_successfully_hotplug_memory() -> None:
    vmi = boot(vm_spec(guest="1Gi"), LIVE)

    result = replan(vmi, vm_spec(guest="1042Mi"), LIVE)

    assert result.live == (
        LiveChange("domain.memory.guest", "1Gi", "1042Mi", LiveKind.MEMORY, ChangeSource.TEMPLATE),
    )


def test_s50_after_a_hotplug_and_a_restart_the_new_memory_is_the_base() -> None:
    restarted = boot(vm_spec(guest="1042Mi"), LIVE)

    assert restarted.status.memory == MemoryStatus(
        guest_at_boot=Quantity.parse("1042Mi"),
        guest_current=Quantity.parse("1042Mi"),
        guest_requested=Quantity.parse("1042Mi"),
    )
    assert replan(restarted, vm_spec(guest="1Gi"), LIVE).pending[0].reason == "MemoryBelowBoot"


def test_s51_should_successfully_hotplug_memory_and_cpu_in_parallel() -> None:
    vmi = boot(vm_spec(sockets=1, max_sockets=2, guest="1Gi"), LIVE)

    result = replan(vmi, vm_spec(sockets=2, max_sockets=2, guest="1042Mi"), LIVE)

    assert [(c.path, c.desired) for c in result.live] == [
        ("domain.cpu.sockets", 2),
        ("domain.memory.guest", "1042Mi"),
    ]
    assert result.restart_required is None


def test_s52_should_successfully_hotplug_memory_when_adding_guest_memory_to_a_vm() -> None:
    """The template had no ``memory.guest``: the VMI's guest came from ``requests.memory``."""
    vmi = boot(vm_spec(guest=None, requests={"memory": "1Gi"}), LIVE)

    result = replan(vmi, vm_spec(guest="1042Mi", requests={"memory": "1Gi"}), LIVE)

    assert [(c.path, c.running, c.desired) for c in result.live] == [("domain.memory.guest", "1Gi", "1042Mi")]


def test_s53_should_successfully_hotplug_memory_twice() -> None:
    vmi = boot(vm_spec(guest="1Gi"), LIVE)

    first = replan(vmi, vm_spec(guest="1028Mi"), LIVE)
    second = replan(RunningVMI(first.next_running, vmi.status), vm_spec(guest="1042Mi"), LIVE)

    assert [(c.running, c.desired) for c in first.live] == [("1Gi", "1028Mi")]
    assert [(c.running, c.desired) for c in second.live] == [("1028Mi", "1042Mi")]


# ------------------------------------------------------------------------------------------- placement


T1, T2 = toleration("t1"), toleration("t2", value="v")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(None, [T1], id="nil-to-t1"),
        pytest.param([T1], [T1, T2], id="t1-to-t1-t2"),
        pytest.param([T1, T2], [T1], id="t1-t2-to-t1"),
        pytest.param([T1], None, id="t1-to-nil"),
    ],
)
def test_s16_tolerations_should_be_live_updated(before: Any, after: Any) -> None:
    vmi = boot(vm_spec(tolerations=before), LIVE)

    result = replan(vmi, vm_spec(tolerations=after), LIVE)

    assert [c.path for c in result.live] == ["tolerations"]
    assert result.next_running.tolerations == after


def test_s17_affinity_should_be_live_updated() -> None:
    affinity = Affinity(
        pod_affinity=PodAffinity(
            required_during_scheduling_ignored_during_execution=[
                PodAffinityTerm(
                    topology_key="kubernetes.io/hostname",
                    label_selector=LabelSelector(match_labels={"app": "db"}),
                )
            ]
        )
    )
    vmi = boot(vm_spec(), LIVE)

    result = replan(vmi, vm_spec(affinity=affinity), LIVE)

    assert [c.kind for c in result.live] == [LiveKind.PLACEMENT]
    assert result.next_running.affinity == affinity


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(None, {"zone": "a"}, id="add"),
        pytest.param({"zone": "a"}, {"zone": "b"}, id="replace"),
        pytest.param({"zone": "b"}, None, id="remove"),
    ],
)
def test_s58_should_successfully_update_node_selector(before: Any, after: Any) -> None:
    vmi = boot(vm_spec(node_selector=before), LIVE)

    result = replan(vmi, vm_spec(node_selector=after), LIVE)

    assert result.restart_required is None
    assert result.next_running.node_selector == after


# --------------------------------------------------------------------------------------------- volumes


def with_volumes(*pairs: tuple[Any, Any]) -> VirtualMachineInstanceSpec:
    """A template with the root containerDisk plus the given (disk, volume) pairs (either may be None)."""
    disks = [disk("root")] + [d for d, _ in pairs if d is not None]
    volumes = [container_disk("root")] + [v for _, v in pairs if v is not None]
    return vm_spec(disks=disks, volumes=volumes)


@pytest.mark.parametrize("cfg", STRATEGIES)
def test_s29_should_not_appear_for_hotpluggable_datavolume_regardless_of_rollout_strategy(
    cfg: KubeVirtConfiguration,
) -> None:
    """Upstream hot-plugs volumes under every strategy. In vmplane staging means staging
    (docs/rollout.md §2): under Stage (and nil, vmplane's default) the hotplug is pending with
    StagedByStrategy."""
    vmi = boot(with_volumes(), cfg)

    result = replan(
        vmi, with_volumes((disk("dv", bus="scsi"), pvc("dv", hotpluggable=True, data_volume=True))), cfg
    )

    if cfg.rollout_strategy is RolloutStrategy.LIVE_UPDATE:
        assert result.restart_required is None
        assert [c.path for c in result.live] == ["domain.devices.disks[name=dv]", "volumes[name=dv]"]
    else:
        assert reasons(result) == [
            ("domain.devices.disks[name=dv]", "StagedByStrategy"),
            ("volumes[name=dv]", "StagedByStrategy"),
        ]


@pytest.mark.parametrize("cfg", STRATEGIES)
def test_s30_should_not_appear_for_hotpluggable_pvc_regardless_of_rollout_strategy(
    cfg: KubeVirtConfiguration,
) -> None:
    """As s29: vmplane stages the hotplug under Stage."""
    vmi = boot(with_volumes(), cfg)

    result = replan(vmi, with_volumes((disk("pvc", bus="scsi"), pvc("pvc", hotpluggable=True))), cfg)

    if cfg.rollout_strategy is RolloutStrategy.LIVE_UPDATE:
        assert result.restart_required is None
        assert [c.kind for c in result.live] == [LiveKind.DISK, LiveKind.DISK]
    else:
        assert {reason for _, reason in reasons(result)} == {"StagedByStrategy"}


@pytest.mark.parametrize("cfg", STRATEGIES)
def test_s31_should_appear_for_non_hotpluggable_volumes_regardless_of_rollout_strategy(
    cfg: KubeVirtConfiguration,
) -> None:
    vmi = boot(with_volumes(), cfg)

    result = replan(vmi, with_volumes((disk("dv"), pvc("dv", hotpluggable=False, data_volume=True))), cfg)

    assert result.restart_required is not None
    assert reasons(result) == [
        ("domain.devices.disks[name=dv]", "NonLiveUpdatableChange"),
        ("volumes[name=dv]", "NonLiveUpdatableChange"),
    ]


@pytest.mark.parametrize("cfg", STRATEGIES)
def test_s32_should_appear_when_mixing_hotpluggable_and_non_hotpluggable_volumes(
    cfg: KubeVirtConfiguration,
) -> None:
    """Upstream lists only the condition's first message; vmplane lists each change with its reason,
    and under LiveUpdate the hotpluggable one waits for the restart."""
    vmi = boot(with_volumes(), cfg)

    result = replan(
        vmi,
        with_volumes(
            (disk("hot", bus="scsi"), pvc("hot", hotpluggable=True, data_volume=True)),
            (disk("cold"), pvc("cold", data_volume=True)),
        ),
        cfg,
    )

    live_update = cfg.rollout_strategy is RolloutStrategy.LIVE_UPDATE
    assert result.restart_required is not None
    # The first pending change: under Stage the hot one, listed first; under LiveUpdate the cold one,
    # since a change that waits is listed after the ones it waits for.
    assert result.restart_required.reason == ("NonLiveUpdatableChange" if live_update else "StagedByStrategy")
    hot = "WaitingForRestart" if live_update else "StagedByStrategy"
    assert sorted(reasons(result)) == sorted(
        [
            ("domain.devices.disks[name=hot]", hot),
            ("volumes[name=hot]", hot),
            ("domain.devices.disks[name=cold]", "NonLiveUpdatableChange"),
            ("volumes[name=cold]", "NonLiveUpdatableChange"),
        ]
    )


VOLUME_CASES = [
    pytest.param(with_volumes(), with_volumes(), True, id="no-change"),
    pytest.param(
        with_volumes(),
        vm_spec(
            disks=[disk("root")], volumes=[container_disk("root", image="quay.io/containerdisks/debian")]
        ),
        False,
        id="container-disk-image-changed",
    ),
    pytest.param(
        with_volumes((disk("pvc"), pvc("pvc"))),
        with_volumes((disk("pvc"), pvc("pvc", claim="other"))),
        False,
        id="pvc-claim-replaced",
    ),
    pytest.param(with_volumes(), with_volumes((disk("pvc"), pvc("pvc"))), False, id="pvc-added"),
    pytest.param(with_volumes((disk("pvc"), pvc("pvc"))), with_volumes(), False, id="pvc-removed"),
    pytest.param(
        with_volumes((disk("hp"), pvc("hp", hotpluggable=True))),
        with_volumes((disk("hp"), pvc("hp", claim="other", hotpluggable=True))),
        True,
        id="hotpluggable-pvc-updated",
    ),
    pytest.param(
        with_volumes(),
        with_volumes((disk("hp"), pvc("hp", hotpluggable=True))),
        True,
        id="hotpluggable-pvc-added",
    ),
    pytest.param(
        with_volumes(),
        vm_spec(
            disks=[disk("hp"), disk("root")],
            volumes=[pvc("hp", hotpluggable=True), container_disk("root")],
        ),
        True,
        id="hotpluggable-pvc-added-first",
    ),
    pytest.param(
        with_volumes((disk("hp1"), pvc("hp1", hotpluggable=True))),
        with_volumes((disk("hp2"), pvc("hp2", hotpluggable=True))),
        True,
        id="hotpluggable-pvc-replaced",
    ),
    pytest.param(
        with_volumes((disk("hp"), pvc("hp", hotpluggable=True))),
        with_volumes(),
        True,
        id="hotpluggable-pvc-removed",
    ),
]


@pytest.mark.parametrize(("before", "after", "live_ok"), VOLUME_CASES)
def test_s35_live_updates_should_be_validated_for_volume_updates(
    before: VirtualMachineInstanceSpec, after: VirtualMachineInstanceSpec, live_ok: bool
) -> None:
    result = replan(boot(before, LIVE), after, LIVE)

    assert (result.restart_required is None) is live_ok
    if live_ok:
        assert all(c.kind is LiveKind.DISK for c in result.live)


CDROM = disk("cd", cdrom=True)
ISO = pvc("cd", claim="iso", hotpluggable=True)


@pytest.mark.parametrize(
    ("before", "after", "live_ok"),
    [
        *VOLUME_CASES,
        pytest.param(with_volumes((CDROM, ISO)), with_volumes((CDROM, None)), True, id="cd-rom-eject"),
        pytest.param(with_volumes((CDROM, None)), with_volumes((CDROM, ISO)), True, id="cd-rom-inject"),
        pytest.param(
            with_volumes((disk("hp"), pvc("hp", hotpluggable=True))),
            with_volumes((disk("hp", bus="scsi"), pvc("hp", hotpluggable=True))),
            False,
            id="hotplugged-disk-bus-changed",
        ),
    ],
)
def test_s36_live_updates_should_be_validated_for_disk_updates(
    before: VirtualMachineInstanceSpec, after: VirtualMachineInstanceSpec, live_ok: bool
) -> None:
    """Upstream allows any change to a disk whose volume is hotpluggable (e.g. its bus);
    docs/rollout.md §2 lists add, remove and CD-ROM media change only, so vmplane needs a restart
    for the bus."""
    result = replan(boot(before, LIVE), after, LIVE)

    assert (result.restart_required is None) is live_ok


def test_s60_should_inject_swap_and_eject_a_cd_rom_and_restart_when_its_disk_is_removed() -> None:
    """tests/storage/declarative-hotplug.go: inject, swap, eject and re-add never need a restart;
    removing the CD-ROM disk does."""
    vmi = boot(with_volumes((CDROM, None)), LIVE)
    for step in (
        with_volumes((CDROM, ISO)),
        with_volumes((CDROM, pvc("cd", claim="iso-2", hotpluggable=True))),
        with_volumes((CDROM, None)),
        with_volumes((CDROM, ISO)),
    ):
        result = replan(vmi, step, LIVE)
        assert result.restart_required is None, step
        vmi = RunningVMI(result.next_running, vmi.status)

    removed = replan(vmi, with_volumes(), LIVE)

    assert removed.restart_required is not None
    assert removed.restart_required.reason == "CDRomDiskRemoved"


# ------------------------------------------------------------------------------------ firmware, clear


def test_s33_restart_required_based_on_vm_and_vmi_uuid_comparison() -> None:
    """The VMI spec carries the firmware UUID the guest booted with; setting the same one in the
    template changes nothing, a different one needs a restart."""
    booted = boot(vm_spec(), LIVE)
    legacy_uuid = "5d307ca9-b3ef-428c-8861-06e72d69f223"
    firmware = {"firmware": {"uuid": legacy_uuid}}
    running = VirtualMachineInstanceSpec.model_validate(
        {**booted.spec.to_wire(), "domain": {**booted.spec.to_wire()["domain"], **firmware}}
    )
    vmi = RunningVMI(running, booted.status)

    assert replan(vmi, vm_spec(firmware_uuid=legacy_uuid), LIVE).restart_required is None
    different = replan(vmi, vm_spec(firmware_uuid="different-uuid-than-vmi"), LIVE)
    assert only_pending(different) == ("NonLiveUpdatableChange", NON_LIVE)


def test_s34_should_clear_existing_restart_required_condition_when_vm_and_vmi_specs_match() -> None:
    vmi = boot(vm_spec(hostname="a"), LIVE)
    assert replan(vmi, vm_spec(hostname="b"), LIVE).restart_required is not None

    result = replan(vmi, vm_spec(hostname="a"), LIVE)

    assert result.restart_required is None
    assert result.empty


# -------------------------------------------------------------------------------------------- networks

NICS: dict[str, Any] = {
    "interfaces": [interface("default", binding="masquerade"), interface("blue", mac="02:00:00:00:00:0b")],
    "networks": [network("default"), network("blue", nad="blue-net")],
}


def nics(**overrides: Any) -> VirtualMachineInstanceSpec:
    return vm_spec(**{**NICS, **overrides})


@pytest.mark.parametrize(
    ("before", "after", "restart"),
    [
        pytest.param(nics(), nics(), False, id="no-change"),
        pytest.param(
            nics(),
            nics(
                interfaces=[*NICS["interfaces"], interface("red")],
                networks=[*NICS["networks"], network("red", nad="red-net")],
            ),
            False,
            id="bridge-nic-hotplugged",
        ),
        pytest.param(
            nics(),
            nics(
                interfaces=[*NICS["interfaces"], interface("vf", binding="sriov")],
                networks=[*NICS["networks"], network("vf", nad="sriov-net")],
            ),
            False,
            id="sriov-nic-hotplugged",
        ),
        pytest.param(
            nics(),
            nics(interfaces=NICS["interfaces"][::-1], networks=NICS["networks"][::-1]),
            False,
            id="order-changed",
        ),
        *(
            pytest.param(
                nics(
                    interfaces=[NICS["interfaces"][0], interface("blue", mac="02:00:00:00:00:0b", state=old)]
                ),
                nics(
                    interfaces=[NICS["interfaces"][0], interface("blue", mac="02:00:00:00:00:0b", state=new)]
                ),
                False,
                id=f"state-{old}-to-{new}",
            )
            for old, new in (
                ("up", "down"),
                ("down", "up"),
                (None, "down"),
                ("up", "absent"),
                ("down", "absent"),
            )
        ),
        pytest.param(
            nics(),
            nics(
                interfaces=[
                    NICS["interfaces"][0],
                    interface("blue", binding="sriov", mac="02:00:00:00:00:0b"),
                ]
            ),
            True,
            id="binding-changed",
        ),
        pytest.param(
            nics(),
            nics(networks=[network("default", nad="pod-like"), NICS["networks"][1]]),
            True,
            id="network-source-pod-to-multus",
        ),
        pytest.param(
            nics(),
            nics(interfaces=NICS["interfaces"][:1], networks=NICS["networks"][:1]),
            True,
            id="interface-and-network-removed",
        ),
        pytest.param(
            nics(),
            nics(networks=[NICS["networks"][0], network("blue", nad="green-net")]),
            True,
            id="nad-name-changed",
        ),
    ],
)
def test_s39_is_restart_required_for_network_changes(
    before: VirtualMachineInstanceSpec, after: VirtualMachineInstanceSpec, restart: bool
) -> None:
    """Upstream hot-plugs only bridge and SR-IOV NICs and swaps a NAD name live on a migratable VMI.
    vmplane has no migration-based NAD swap, so a NAD name change always needs a restart."""
    result = replan(boot(before, LIVE), after, LIVE)

    assert (result.restart_required is not None) is restart
    if not restart:
        assert all(c.kind is LiveKind.INTERFACE for c in result.live)


def test_s39_pod_network_added_to_a_networkless_vm() -> None:
    """Upstream needs a restart to add the pod network to a VMI that has none. docs/rollout.md §2
    makes every NIC add live (vmplane hot-plugs the NIC into the running QEMU), whatever its binding."""
    vmi = boot(vm_spec(), LIVE)

    result = replan(
        vmi,
        vm_spec(interfaces=[interface("default", binding="masquerade")], networks=[network("default")]),
        LIVE,
    )

    assert result.restart_required is None
    assert [c.kind for c in result.live] == [LiveKind.INTERFACE, LiveKind.INTERFACE]


# ------------------------------------------------------------------------------------ the VMI mutator


MUTATOR_SOCKETS = [
    pytest.param({"max_cpu_sockets": 10}, {}, 10, id="cluster-max-cpu-sockets-10"),
    pytest.param(
        {"max_cpu_sockets": 10, "max_hotplug_ratio": 2}, {"sockets": 2}, 10, id="cluster-10-ratio-2-sockets-2"
    ),
    pytest.param({}, {"max_sockets": 16}, 16, id="explicit-max-sockets-16"),
    pytest.param(
        {"max_hotplug_ratio": 2},
        {"sockets": None, "cores": None, "threads": None},
        2,
        id="ratio-2-default-topology",
    ),
    pytest.param({}, {"sockets": 2}, 8, id="sockets-2"),
    pytest.param(
        {}, {"sockets": 32, "cores": 2, "threads": 3}, 85, id="sockets-32-cores-2-threads-3-gives-85"
    ),
    pytest.param({}, {"sockets": None, "cores": None, "threads": None}, 4, id="default-topology"),
    pytest.param({"max_cpu_sockets": 2}, {"sockets": 3}, 3, id="cluster-2-sockets-3"),
    pytest.param({"max_cpu_sockets": 10}, {"architecture": "arm64"}, None, id="arm64-no-max-sockets"),
]

MUTATOR_GUEST = [
    pytest.param({}, {"max_guest": "6Gi"}, "6Gi", id="explicit-6Gi"),
    pytest.param({"max_guest": "10Gi"}, {}, "10Gi", id="cluster-10Gi"),
    pytest.param({"max_guest": "10Gi", "max_hotplug_ratio": 2}, {}, "10Gi", id="cluster-10Gi-over-ratio-2"),
    pytest.param({}, {"guest": "1Gi"}, "4Gi", id="guest-1Gi"),
    pytest.param({"max_hotplug_ratio": 2}, {"guest": "1Gi"}, "2Gi", id="ratio-2"),
    pytest.param({}, {"realtime": True}, None, id="realtime"),
    pytest.param({}, {"launch_security": True}, None, id="launch-security"),
    pytest.param({}, {"guest_mapping_passthrough": True}, None, id="guest-mapping-passthrough"),
    pytest.param({}, {"guest": None}, None, id="guest-unset"),
    pytest.param({}, {"guest": "123"}, None, id="guest-123"),
    pytest.param({}, {"guest": "512Mi"}, None, id="guest-512Mi"),
    pytest.param({"max_guest": "512Mi"}, {"architecture": "arm64"}, None, id="arm64"),
    pytest.param({"max_guest": "512Mi"}, {"architecture": "s390x"}, None, id="s390x"),
]


@pytest.mark.parametrize("strategy", ["LiveUpdate", "Stage"])
@pytest.mark.parametrize(("cluster", "template", "max_sockets"), MUTATOR_SOCKETS)
def test_s40_mutator_max_sockets(
    cluster: dict[str, Any], template: dict[str, Any], max_sockets: int | None, strategy: str
) -> None:
    """vmi-mutator_test.go "when vmRolloutStrategy LiveUpdate is enabled". Upstream gives no headroom
    under Stage; vmplane gives the same headroom under both strategies."""
    effective = effective_spec(vm_spec(**template), config(strategy=strategy, **cluster))

    assert cpu_of(effective.spec).max_sockets == max_sockets


def test_s40_mutator_max_sockets_32_sockets_2_cores_3_threads_gives_85() -> None:
    effective = effective_spec(vm_spec(sockets=32, cores=2, threads=3), LIVE)

    assert cpu_of(effective.spec).max_sockets == 85


@pytest.mark.parametrize("strategy", ["LiveUpdate", "Stage"])
@pytest.mark.parametrize(("cluster", "template", "max_guest"), MUTATOR_GUEST)
def test_s40_mutator_max_guest(
    cluster: dict[str, Any], template: dict[str, Any], max_guest: str | None, strategy: str
) -> None:
    """As above, for maxGuest: it stays unset wherever memory hotplug is impossible."""
    effective = effective_spec(vm_spec(**template), config(strategy=strategy, **cluster))

    memory = effective.spec.domain.memory
    got = memory.max_guest if memory is not None else None
    assert got == (Quantity.parse(max_guest) if max_guest is not None else None)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(
            {"sockets": None, "cores": None, "threads": None, "guest": "1Gi"}, id="default-topology"
        ),
        pytest.param({"sockets": 2, "cores": 2, "threads": 1, "guest": "2Gi"}, id="explicit"),
    ],
)
def test_s40_mutator_status_memory_and_current_cpu_topology(template: dict[str, Any]) -> None:
    vmi = running_vmi(effective_spec(vm_spec(**template), LIVE))

    cpu = cpu_of(vmi.spec)
    guest = Quantity.parse(template["guest"])
    assert vmi.status.current_cpu_topology == CPUTopology(
        sockets=cpu.sockets, cores=cpu.cores, threads=cpu.threads
    )
    assert vmi.status.memory == MemoryStatus(guest_at_boot=guest, guest_current=guest, guest_requested=guest)
    if template["sockets"] is None:
        assert vmi.status.current_cpu_topology == CPUTopology(sockets=1, cores=1, threads=1)


# ------------------------------------------------------------------------------------------ admission


def test_s41_live_update_admission_rejects_sockets_above_max_sockets() -> None:
    """Upstream probably reports this cause twice under LiveUpdate (its admitter adds it twice);
    vmplane once."""
    causes = validate_vm(vm(vm_spec(sockets=25, max_sockets=24)), LIVE)

    assert causes == [FieldCause(SOCKETS_FIELD, TOO_MANY_SOCKETS)]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param({"realtime": True}, "Memory hotplug is not compatible with realtime VMs", id="realtime"),
        pytest.param(
            {"launch_security": True},
            "Memory hotplug is not compatible with encrypted VMs",
            id="launch-security",
        ),
        pytest.param(
            {"guest_mapping_passthrough": True},
            "Memory hotplug is not compatible with guest mapping passthrough",
            id="guest-mapping-passthrough",
        ),
        pytest.param(
            {"guest": None}, "Guest memory must be configured when memory hotplug is enabled", id="guest-nil"
        ),
        pytest.param(
            {"guest": str(Quantity.parse("4Gi") + Quantity.parse("16Mi"))},
            "Guest memory is greater than the configured maxGuest memory",
            id="guest-above-max-guest",
        ),
        pytest.param({"max_guest": "2049Mi"}, "MaxGuest must be 2Mi aligned", id="max-guest-2049Mi"),
        pytest.param({"guest": "1025Mi"}, "Guest memory must be 2Mi aligned", id="guest-1025Mi"),
        pytest.param(
            {"guest": "2G", "hugepages": "1Gi", "max_guest": "16Gi"},
            "Guest memory must be 1Gi aligned",
            id="guest-2G-hugepages-1Gi",
        ),
        pytest.param(
            {"architecture": "arm64"}, "Memory hotplug is only available for x86_64 VMs", id="arm64"
        ),
        pytest.param(
            {"guest": "512Mi"},
            "Memory hotplug is only available for VMs with at least 1Gi of guest memory",
            id="guest-512Mi",
        ),
    ],
)
def test_s41_live_update_admission_rejects_memory_that_cannot_be_hotplugged(
    template: dict[str, Any], message: str
) -> None:
    causes = validate_vm(vm(vm_spec(**{"guest": "1Gi", "max_guest": "4Gi", **template})), LIVE)

    assert causes[0] == FieldCause(GUEST_FIELD, message)


def test_s41_memory_hotplug_rules_do_not_apply_under_stage() -> None:
    assert validate_vm(vm(vm_spec(guest="512Mi", max_guest="4Gi")), STAGE) == []


def test_s41_accepts_a_hotpluggable_memory_configuration() -> None:
    assert validate_vm(vm(vm_spec(guest="1Gi", max_guest="4Gi")), LIVE) == []


@pytest.mark.parametrize(
    ("cfg", "rejected"),
    [
        pytest.param(STAGE, True, id="Stage"),
        pytest.param(DEFAULT, True, id="default"),
        pytest.param(LIVE, False, id="LiveUpdate"),
    ],
)
def test_s42_guest_above_the_memory_limit(cfg: KubeVirtConfiguration, rejected: bool) -> None:
    """vmi-create-admitter_test.go. Upstream's default is LiveUpdate and accepts; vmplane's default is
    Stage, so it rejects."""
    causes = validate_vm(vm(vm_spec(guest="128Mi", limits={"memory": "64Mi"})), cfg)

    if rejected:
        assert causes == [
            FieldCause(
                GUEST_FIELD,
                "spec.template.spec.domain.memory.guest '128Mi' must be equal to or less than the memory "
                "limit spec.template.spec.domain.resources.limits.memory '64Mi'",
            )
        ]
    else:
        assert causes == []


def test_s42_stage_allows_guest_below_the_memory_request() -> None:
    assert validate_vm(vm(vm_spec(guest="1Mi", requests={"memory": "64Mi"})), STAGE) == []


# -------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("value", "strategy"),
    [
        pytest.param(None, RolloutStrategy.STAGE, id="nil-is-Stage"),
        pytest.param("Stage", RolloutStrategy.STAGE, id="Stage"),
        pytest.param("LiveUpdate", RolloutStrategy.LIVE_UPDATE, id="LiveUpdate"),
    ],
)
def test_s44_when_vm_rollout_strategy(value: str | None, strategy: RolloutStrategy) -> None:
    """configuration_test.go: upstream reads nil as LiveUpdate; vmplane's default is Stage
    (docs/rollout.md §2)."""
    cfg = KubeVirtConfiguration.model_validate({} if value is None else {"vmRolloutStrategy": value})

    assert cfg.rollout_strategy is strategy


def test_s44_any_other_vm_rollout_strategy_is_rejected() -> None:
    with pytest.raises(ValidationError):
        KubeVirtConfiguration.model_validate({"vmRolloutStrategy": "Rolling"})


@pytest.mark.parametrize(
    ("live_update_configuration", "ratio"),
    [
        pytest.param(None, 4, id="no-live-update-configuration"),
        pytest.param({}, 4, id="is-unset"),
        pytest.param({"maxCpuSockets": 8}, 4, id="unset-beside-other-fields"),
        pytest.param({"maxHotplugRatio": 100}, 100, id="is-set"),
    ],
)
def test_s44_when_max_hotplug_ratio(live_update_configuration: dict[str, Any] | None, ratio: int) -> None:
    """Upstream returns 1 for a nil liveUpdateConfiguration, which its JSON merge never produces."""
    wire = {} if live_update_configuration is None else {"liveUpdateConfiguration": live_update_configuration}

    assert KubeVirtConfiguration.model_validate(wire).max_hotplug_ratio == ratio
