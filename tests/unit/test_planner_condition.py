"""docs/rollout.md §2 "The RestartRequired condition", "Cluster defaults take part" and "Going past upstream":
when the condition is set, what it says, how it clears, and how revert, cluster defaults, strategy
switches and failed hotplugs take part.
"""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.guest_resources import Resources
from vmplane.api.vm import ChangeSource, PendingChange
from vmplane.api.vmi import HotplugFailure, VirtualMachineInstanceSpec, VirtualMachineInstanceStatus
from vmplane.rollout.plan import LiveChange, Plan
from vmplane.rollout.revert import revert
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
    vm_spec,
)

NON_LIVE = "a non-live-updatable field was changed in the template spec"
WAITING = "live-updatable, but no change is propagated while a restart is required"
SOCKETS_REDUCED = "Reduction of CPU socket count requires a restart"
MEMORY_ABOVE_MAX = "memory hotplug not supported, Guest memory is greater than the configured maxGuest memory"
MEMORY_HOTPLUG_FAILED = (
    "memory updated in template spec. Memory-hotplug failed and is not available for this VM configuration"
)
HOTPLUG_FAILED = "the hotplug failed; the change takes effect at the next restart"
CLUSTER_CHANGED = (
    "a cluster-wide default changed; the running guest keeps the old value until the next restart"
)

CPU, MEMORY = "domain.cpu.sockets", "domain.memory.guest"
LIVE = config(strategy="LiveUpdate")
STAGE = config(strategy="Stage")

BASE: dict[str, Any] = {
    "sockets": 2,
    "guest": "2Gi",
    "disks": [disk("root"), disk("data")],
    "volumes": [container_disk("root"), pvc("data", hotpluggable=True)],
    "interfaces": [interface("default", binding="masquerade")],
    "networks": [network("default")],
}


def spec(**overrides: Any) -> VirtualMachineInstanceSpec:
    return vm_spec(**{**BASE, **overrides})


def template_pending(path: str, running: Any, desired: Any, reason: str, message: str) -> PendingChange:
    return PendingChange(
        path=f"spec.template.spec.{path}",
        running=running,
        desired=desired,
        reason=reason,
        message=message,
        source=ChangeSource.TEMPLATE,
    )


def hotplugged(vmi: RunningVMI, template: VirtualMachineInstanceSpec) -> RunningVMI:
    """The VMI after ``template``'s live changes were applied to it (the guest accepted them)."""
    result = replan(vmi, template, LIVE)
    assert result.live
    assert not result.pending
    return RunningVMI(result.next_running, vmi.status)


# ------------------------------------------------------------------------------------ the condition


@pytest.mark.parametrize(
    ("template", "cfg", "pending"),
    [
        pytest.param(spec(), LIVE, False, id="unchanged-LiveUpdate"),
        pytest.param(spec(), STAGE, False, id="unchanged-Stage"),
        pytest.param(spec(sockets=3), LIVE, False, id="live-change-LiveUpdate"),
        pytest.param(spec(sockets=3), STAGE, True, id="live-capable-change-Stage"),
        pytest.param(spec(hostname="db"), LIVE, True, id="non-live-change-LiveUpdate"),
        pytest.param(spec(sockets=1), LIVE, True, id="sockets-reduced-LiveUpdate"),
        pytest.param(spec(hostname="db", sockets=3), LIVE, True, id="non-live-and-live-LiveUpdate"),
    ],
)
def test_restart_required_is_set_exactly_while_something_is_pending(
    template: VirtualMachineInstanceSpec, cfg: Any, pending: bool
) -> None:
    result = replan(boot(spec(), cfg), template, cfg)

    assert bool(result.pending) is pending
    assert (result.restart_required is not None) is pending
    if not pending:
        assert result.restart_required is None


def test_reason_is_the_first_pending_change_and_message_lists_all_of_them() -> None:
    template = spec(hostname="db", sockets=1, guest="9Gi")

    result = replan(boot(spec(), LIVE), template, LIVE)

    assert result.pending == (
        template_pending("domain.cpu.sockets", 2, 1, "CPUSocketsReduced", SOCKETS_REDUCED),
        template_pending("domain.memory.guest", "2Gi", "9Gi", "MemoryAboveMax", MEMORY_ABOVE_MAX),
        template_pending("hostname", None, "db", "NonLiveUpdatableChange", NON_LIVE),
    )
    assert result.restart_required is not None
    assert result.restart_required.reason == "CPUSocketsReduced"
    assert result.restart_required.message == (
        "3 changes require a restart: "
        f"spec.template.spec.domain.cpu.sockets: {SOCKETS_REDUCED}; "
        f"spec.template.spec.domain.memory.guest: {MEMORY_ABOVE_MAX}; "
        f"spec.template.spec.hostname: {NON_LIVE}"
    )


def test_a_single_pending_change_is_the_whole_message() -> None:
    result = replan(boot(spec(), LIVE), spec(sockets=1), LIVE)

    assert result.restart_required is not None
    assert result.restart_required.message == f"spec.template.spec.domain.cpu.sockets: {SOCKETS_REDUCED}"


# ---------------------------------------------------------------------------- sticky, and revert-to-clear


def test_live_capable_change_waits_while_a_restart_is_required() -> None:
    """Upstream skips every live-update handler while RestartRequired is set; so does vmplane."""
    vmi = boot(spec(), LIVE)

    result = replan(vmi, spec(hostname="db", sockets=3, node_selector={"zone": "a"}), LIVE)

    assert result.live == ()
    assert result.pending == (
        template_pending("hostname", None, "db", "NonLiveUpdatableChange", NON_LIVE),
        template_pending("domain.cpu.sockets", 2, 3, "WaitingForRestart", WAITING),
        template_pending("nodeSelector", None, {"zone": "a"}, "WaitingForRestart", WAITING),
    )
    assert result.restart_required is not None
    assert result.restart_required.reason == "NonLiveUpdatableChange"
    assert f"spec.template.spec.domain.cpu.sockets: {WAITING}" in result.restart_required.message
    assert result.next_running == vmi.spec


def test_editing_the_template_back_clears_the_condition_and_the_waiting_change_goes_live() -> None:
    vmi = boot(spec(), LIVE)
    blocked = replan(vmi, spec(hostname="db", sockets=3), LIVE)
    assert blocked.restart_required is not None

    reverted = replan(vmi, spec(sockets=3), LIVE)

    assert reverted.restart_required is None
    assert reverted.pending == ()
    assert reverted.live == (LiveChange("domain.cpu.sockets", 2, 3, LiveKind.CPU, ChangeSource.TEMPLATE),)
    assert reverted.next_running.domain.cpu is not None
    assert reverted.next_running.domain.cpu.sockets == 3


def test_a_restart_clears_everything() -> None:
    """A restart boots a new VMI from the current effective spec: nothing differs any more."""
    template = spec(hostname="db", sockets=1, guest="9Gi")

    result = replan(boot(template, LIVE), template, LIVE)

    assert result.empty
    assert result.restart_required is None


# ------------------------------------------------------------------------------------------ revert()


def pending_paths(result: Plan) -> list[str]:
    return [change.path for change in result.pending]


def test_revert_of_all_pending_paths_clears_the_condition() -> None:
    vmi = boot(spec(), LIVE)
    edited = spec(hostname="db", sockets=1, cores=2, guest="9Gi")
    result = replan(vmi, edited, LIVE)

    reverted = revert(edited, vmi.spec, pending_paths(result))

    after = replan(vmi, reverted, LIVE)
    assert after.empty
    assert after.restart_required is None
    assert reverted.hostname is None
    assert reverted.domain.cpu is not None
    assert (reverted.domain.cpu.sockets, reverted.domain.cpu.cores) == (2, 1)


def test_revert_of_a_subset_keeps_the_rest_pending() -> None:
    vmi = boot(spec(), LIVE)
    edited = spec(hostname="db", cores=2)

    reverted = revert(edited, vmi.spec, ["spec.template.spec.hostname"])

    after = replan(vmi, reverted, LIVE)
    assert after.pending == (template_pending("domain.cpu.cores", 1, 2, "NonLiveUpdatableChange", NON_LIVE),)


def test_revert_of_the_blocking_change_lets_the_waiting_one_go_live() -> None:
    vmi = boot(spec(), LIVE)
    edited = spec(hostname="db", sockets=3)
    assert [c.reason for c in replan(vmi, edited, LIVE).pending] == [
        "NonLiveUpdatableChange",
        "WaitingForRestart",
    ]

    after = replan(vmi, revert(edited, vmi.spec, ["spec.template.spec.hostname"]), LIVE)

    assert after.restart_required is None
    assert [c.path for c in after.live] == ["domain.cpu.sockets"]


def test_revert_accepts_vmi_spec_relative_paths() -> None:
    vmi = boot(spec(), LIVE)

    reverted = revert(spec(hostname="db"), vmi.spec, ["hostname"])

    assert replan(vmi, reverted, LIVE).empty


def test_revert_of_a_disk_takes_its_volume_along() -> None:
    vmi = boot(spec(), LIVE)
    edited = spec(disks=[*BASE["disks"], disk("scratch")], volumes=[*BASE["volumes"], pvc("scratch")])
    assert pending_paths(replan(vmi, edited, LIVE)) == [
        "spec.template.spec.domain.devices.disks[name=scratch]",
        "spec.template.spec.volumes[name=scratch]",
    ]

    reverted = revert(edited, vmi.spec, ["spec.template.spec.domain.devices.disks[name=scratch]"])

    assert [v.name for v in reverted.volumes or ()] == ["root", "data"]
    assert [d.name for d in reverted.domain.devices.disks or ()] == ["root", "data"]
    assert replan(vmi, reverted, LIVE).empty


def test_revert_of_an_interface_takes_its_network_along() -> None:
    template = spec(
        interfaces=[*BASE["interfaces"], interface("sec", model="virtio")],
        networks=[*BASE["networks"], network("sec", nad="br-net")],
    )
    vmi = boot(template, LIVE)
    edited = spec()  # sec removed without state: absent
    assert len(replan(vmi, edited, LIVE).pending) == 2

    reverted = revert(edited, vmi.spec, ["spec.template.spec.domain.devices.interfaces[name=sec]"])

    assert replan(vmi, reverted, LIVE).empty


def test_revert_of_one_topology_field_pins_the_whole_topology() -> None:
    """A template without a topology is defaulted to 1x1x1 as a whole; a partial one is not defaulted."""
    vmi = boot(spec(sockets=1, threads=2), LIVE)
    edited = spec(sockets=None, cores=None, threads=None)
    result = replan(vmi, edited, LIVE)
    assert pending_paths(result) == ["spec.template.spec.domain.cpu.threads"]

    reverted = revert(edited, vmi.spec, pending_paths(result))

    assert (reverted.domain.cpu.sockets, reverted.domain.cpu.cores, reverted.domain.cpu.threads) == (1, 1, 2)
    assert replan(vmi, reverted, LIVE).empty


def test_revert_of_a_cluster_sourced_path_pins_the_running_value_in_the_template() -> None:
    booted_under = config(strategy="LiveUpdate", cpu_model="Haswell")
    now = config(strategy="LiveUpdate", cpu_model="Skylake-Server")
    vmi = boot(spec(), booted_under)
    result = replan(vmi, spec(), now)
    assert pending_paths(result) == ["spec.template.spec.domain.cpu.model"]

    reverted = revert(spec(), vmi.spec, pending_paths(result))

    assert reverted.domain.cpu is not None
    assert reverted.domain.cpu.model == "Haswell"
    assert replan(vmi, reverted, now).empty


# ---------------------------------------------------------------------------------- cluster defaults


@pytest.mark.parametrize(
    ("before", "after", "path", "running", "desired"),
    [
        pytest.param(
            {"cpu_model": "Haswell"},
            {"cpu_model": "Skylake-Server"},
            "domain.cpu.model",
            "Haswell",
            "Skylake-Server",
            id="cpu-model",
        ),
        pytest.param(
            {},
            {"cpu_model": "Skylake-Server"},
            "domain.cpu.model",
            None,
            "Skylake-Server",
            id="cpu-model-set",
        ),
        pytest.param(
            {"machine_type": "q35"},
            {"machine_type": "pc-q35-rhel9.4.0"},
            "domain.machine.type",
            "q35",
            "pc-q35-rhel9.4.0",
            id="machine-type",
        ),
        pytest.param(
            {}, {"machine_type": "q35"}, "domain.machine", None, {"type": "q35"}, id="machine-type-set"
        ),
        pytest.param(
            {"eviction_strategy": "LiveMigrateIfPossible"},
            {"eviction_strategy": "LiveMigrate"},
            "evictionStrategy",
            "LiveMigrateIfPossible",
            "LiveMigrate",
            id="eviction-strategy",
        ),
        pytest.param(
            {"max_cpu_sockets": 8},
            {"max_cpu_sockets": 16},
            "domain.cpu.maxSockets",
            8,
            16,
            id="max-cpu-sockets",
        ),
        pytest.param(
            {"max_guest": "8Gi"},
            {"max_guest": "16Gi"},
            "domain.memory.maxGuest",
            "8Gi",
            "16Gi",
            id="max-guest",
        ),
    ],
)
@pytest.mark.parametrize("strategy", ["LiveUpdate", "Stage"])
def test_cluster_default_change_is_pending_with_source_cluster(
    before: dict[str, Any], after: dict[str, Any], path: str, running: Any, desired: Any, strategy: str
) -> None:
    vmi = boot(spec(), config(strategy=strategy, **before))

    result = replan(vmi, spec(), config(strategy=strategy, **after))

    assert result.live == ()
    assert result.pending == (
        PendingChange(
            path=f"spec.template.spec.{path}",
            running=running,
            desired=desired,
            reason="ClusterDefaultChanged",
            message=CLUSTER_CHANGED,
            source=ChangeSource.CLUSTER,
        ),
    )
    assert result.restart_required is not None
    assert result.restart_required.reason == "ClusterDefaultChanged"


def test_a_template_value_shadows_the_cluster_default() -> None:
    vmi = boot(spec(cpu_model="host-passthrough"), config(strategy="LiveUpdate", cpu_model="Haswell"))

    result = replan(
        vmi, spec(cpu_model="host-passthrough"), config(strategy="LiveUpdate", cpu_model="Skylake")
    )

    assert result.empty


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({}, {"max_hotplug_ratio": 8}, id="ratio-raised"),
        pytest.param({"max_hotplug_ratio": 8}, {"max_hotplug_ratio": 2}, id="ratio-lowered"),
        pytest.param({"max_cpu_sockets": 8}, {}, id="cluster-max-sockets-unset"),
    ],
)
@pytest.mark.parametrize("strategy", ["LiveUpdate", "Stage"])
def test_ratio_derived_headroom_is_never_pending(
    before: dict[str, Any], after: dict[str, Any], strategy: str
) -> None:
    """Headroom is recomputed at every boot; the running guest keeps the ceiling it booted with."""
    vmi = boot(spec(), config(strategy=strategy, **before))

    assert replan(vmi, spec(), config(strategy=strategy, **after)).empty


def test_headroom_follows_the_new_size_without_being_a_change() -> None:
    vmi = boot(spec(), LIVE)  # maxSockets 8, maxGuest 8Gi

    result = replan(vmi, spec(sockets=4, guest="4Gi"), LIVE)  # the template's headroom is now 16 / 16Gi

    assert [c.path for c in result.live] == ["domain.cpu.sockets", "domain.memory.guest"]
    assert result.pending == ()
    cpu, memory = result.next_running.domain.cpu, result.next_running.domain.memory
    assert cpu is not None
    assert memory is not None
    assert (cpu.max_sockets, str(memory.max_guest)) == (8, "8Gi")


# ------------------------------------------------------------------------------------ strategy switch


def test_switching_stage_to_live_update_lets_a_staged_socket_increase_go_live() -> None:
    """Upstream gives no headroom under Stage, so after the switch the increase still needs a restart
    (docs/rollout.md §6.2); vmplane boots every VMI with headroom, so it goes live."""
    vmi = boot(spec(), STAGE)
    staged = replan(vmi, spec(sockets=4), STAGE)
    assert [(c.reason, c.running, c.desired) for c in staged.pending] == [("StagedByStrategy", 2, 4)]

    switched = replan(vmi, spec(sockets=4), LIVE)

    assert switched.restart_required is None
    assert switched.live == (LiveChange("domain.cpu.sockets", 2, 4, LiveKind.CPU, ChangeSource.TEMPLATE),)


# ----------------------------------------------------------------------------------- failed hotplugs


def failed(vmi: RunningVMI, **update: Any) -> VirtualMachineInstanceStatus:
    return vmi.status.model_copy(update=update)


def test_failed_cpu_hotplug_is_pending_with_the_sockets_the_guest_has() -> None:
    vmi = hotplugged(boot(spec(), LIVE), spec(sockets=3))
    status = failed(vmi, hotplug_failures=[HotplugFailure(path=CPU, message="vCPU hotplug failed")])

    result = replan(vmi, spec(sockets=3), LIVE, status=status)

    assert result.pending == (
        template_pending(
            "domain.cpu.sockets", 2, 3, "HotplugFailed", f"{HOTPLUG_FAILED}: vCPU hotplug failed"
        ),
    )
    assert result.restart_required is not None
    assert result.restart_required.reason == "HotplugFailed"


def test_failed_memory_hotplug_is_pending_with_the_memory_the_guest_has() -> None:
    vmi = hotplugged(boot(spec(), LIVE), spec(guest="4Gi"))
    status = failed(
        vmi,
        hotplug_failures=[
            HotplugFailure(
                path=MEMORY, message="memory hotplug failed, the VM configuration is not supported"
            )
        ],
    )

    result = replan(vmi, spec(guest="4Gi"), LIVE, status=status)

    assert result.pending == (
        template_pending(
            "domain.memory.guest",
            "2Gi",
            "4Gi",
            "HotplugFailed",
            f"{MEMORY_HOTPLUG_FAILED}: memory hotplug failed, the VM configuration is not supported",
        ),
    )


def test_failed_volume_hotplug_is_pending_as_absent_from_the_guest() -> None:
    edited = spec(disks=[*BASE["disks"], disk("x")], volumes=[*BASE["volumes"], pvc("x", hotpluggable=True)])
    vmi = hotplugged(boot(spec(), LIVE), edited)
    status = failed(vmi, hotplug_failures=[HotplugFailure(path="volumes[name=x]", message="attach failed")])

    result = replan(vmi, edited, LIVE, status=status)

    message = f"{HOTPLUG_FAILED}: attach failed"
    assert result.pending == (
        template_pending("domain.devices.disks[name=x]", None, disk("x").to_wire(), "HotplugFailed", message),
        template_pending(
            "volumes[name=x]", None, pvc("x", hotpluggable=True).to_wire(), "HotplugFailed", message
        ),
    )


def test_hotplug_that_did_not_fail_is_not_pending() -> None:
    """``HotVCPUChange`` True is a hotplug in flight, not a failure; planning again finds nothing."""
    vmi = hotplugged(boot(spec(), LIVE), spec(sockets=3))
    status = failed(vmi, conditions=[condition("HotVCPUChange", status="True")])

    assert replan(vmi, spec(sockets=3), LIVE, status=status).empty


FAILURES = [
    pytest.param(
        spec(sockets=3),
        spec(),
        {"hotplug_failures": [HotplugFailure(path=CPU, message="vCPU hotplug failed")]},
        id="cpu",
    ),
    pytest.param(
        spec(guest="4Gi"),
        spec(),
        {"hotplug_failures": [HotplugFailure(path=MEMORY)]},
        id="memory",
    ),
    pytest.param(
        spec(disks=[*BASE["disks"], disk("x")], volumes=[*BASE["volumes"], pvc("x", hotpluggable=True)]),
        spec(),
        {"hotplug_failures": [HotplugFailure(path="volumes[name=x]")]},
        id="volume",
    ),
]


@pytest.mark.parametrize(("edited", "observed_value", "status_update"), FAILURES)
def test_editing_the_template_to_the_observed_value_clears_a_failed_hotplug(
    edited: VirtualMachineInstanceSpec,
    observed_value: VirtualMachineInstanceSpec,
    status_update: dict[str, Any],
) -> None:
    vmi = hotplugged(boot(spec(), LIVE), edited)
    status = failed(vmi, **status_update)
    assert replan(vmi, edited, LIVE, status=status).restart_required is not None

    result = replan(vmi, observed_value, LIVE, status=status)

    assert result.restart_required is None
    assert result.pending == ()
    assert result.live == ()
    # The VMI spec is brought back to what the guest has.
    assert result.next_running == boot(spec(), LIVE).spec


@pytest.mark.parametrize(("edited", "observed_value", "status_update"), FAILURES)
def test_revert_of_a_failed_hotplug_writes_back_what_the_guest_has(
    edited: VirtualMachineInstanceSpec,
    observed_value: VirtualMachineInstanceSpec,
    status_update: dict[str, Any],
) -> None:
    vmi = hotplugged(boot(spec(), LIVE), edited)
    status = failed(vmi, **status_update)
    result = replan(vmi, edited, LIVE, status=status)

    reverted = revert(edited, vmi.spec, pending_paths(result), observed=status)

    assert reverted == observed_value
    assert replan(vmi, reverted, LIVE, status=status).restart_required is None


# ----------------------------------------------------------------------------- the node's capacity


def test_a_cpu_hotplug_the_node_cannot_hold_is_pending_insufficient_node_resources() -> None:
    vmi = boot(spec(), LIVE)
    room = Resources(250, 2**40)  # two vCPUs take 200m; a third would take 300m

    result = replan(vmi, spec(sockets=3), LIVE, node_room=room)

    assert not result.live
    (change,) = result.pending
    assert (change.path, change.reason) == (
        "spec.template.spec.domain.cpu.sockets",
        "InsufficientNodeResources",
    )
    assert change.message == (
        "the VMI's node cannot hold the change: Insufficient cpu "
        "(the VMI would request 300m, the node has 250m for it)"
    )
    assert result.restart_required is not None
    assert result.restart_required.reason == "InsufficientNodeResources"


def test_a_memory_hotplug_the_node_cannot_hold_is_pending_and_the_cpu_change_waits() -> None:
    vmi = boot(spec(), LIVE)
    room = Resources(10_000, 3 * 2**30)

    result = replan(vmi, spec(sockets=3, guest="4Gi"), LIVE, node_room=room)

    assert [(p.path, p.reason) for p in result.pending] == [
        ("spec.template.spec.domain.memory.guest", "InsufficientNodeResources"),
        ("spec.template.spec.domain.cpu.sockets", "WaitingForRestart"),
    ]


def test_a_hotplug_the_node_can_hold_goes_live() -> None:
    result = replan(
        boot(spec(), LIVE), spec(sockets=3, guest="3Gi"), LIVE, node_room=Resources(300, 4 * 2**30)
    )

    assert {c.kind for c in result.live} == {LiveKind.CPU, LiveKind.MEMORY}
    assert not result.pending


def test_a_node_already_over_its_room_still_takes_changes_that_need_no_more() -> None:
    result = replan(boot(spec(), LIVE), spec(node_selector={"disk": "ssd"}), LIVE, node_room=Resources(0, 0))

    assert [c.kind for c in result.live] == [LiveKind.PLACEMENT]
    assert not result.pending
