"""Invariants of the planner over realistic VM templates, edits of them and cluster changes.

A case is a template a VMI booted from, under one cluster configuration, an edit of that template (a
few of its fields drawn again), the cluster configuration now, and what the VMI's status reports
(sometimes a failed hotplug).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vmplane.api.guest_resources import Resources, guest_request
from vmplane.api.kubevirt import KubeVirtConfiguration, RolloutStrategy
from vmplane.api.vm import ChangeSource
from vmplane.api.vmi import HotplugFailure, VirtualMachineInstanceSpec, VirtualMachineInstanceStatus
from vmplane.rollout.effective import effective_spec
from vmplane.rollout.plan import Plan, plan
from vmplane.rollout.revert import revert
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

SETTINGS = settings(max_examples=500, deadline=None)

# ------------------------------------------------------------------------------------------ templates

DATA_DISKS = ("d1", "d2", "d3")
NICS = ("n1", "n2")

data_disk = st.fixed_dictionaries(
    {
        "hotpluggable": st.booleans(),
        "bus": st.sampled_from(["virtio", "scsi"]),
        "claim": st.sampled_from(["a", "b"]),
    }
)
nic = st.fixed_dictionaries(
    {
        "binding": st.sampled_from(["bridge", "sriov"]),
        "model": st.sampled_from([None, "virtio", "e1000"]),
        "state": st.sampled_from([None, "up", "down", "absent"]),
        "nad": st.sampled_from(["red", "blue"]),
    }
)

# Each field of a template, drawn independently, so an edit redraws a few of them.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "topology": st.one_of(
        st.none(),
        st.tuples(st.integers(1, 6), st.integers(1, 2), st.integers(1, 2)),
    ),
    "max_sockets": st.sampled_from([None, None, None, 4, 8]),
    "cpu_model": st.sampled_from([None, None, "Haswell", "host-passthrough"]),
    "guest": st.sampled_from(["512Mi", "1Gi", "1024Mi", "1536Mi", "2Gi", "2048Mi", "3Gi", "4Gi", "9Gi"]),
    "max_guest": st.sampled_from([None, None, "8Gi"]),
    "hostname": st.sampled_from([None, "a", "b"]),
    "node_selector": st.sampled_from([None, {"zone": "a"}, {"zone": "b"}]),
    "tolerations": st.sampled_from([None, ("t1",), ("t1", "t2")]),
    "eviction_strategy": st.sampled_from([None, "LiveMigrate"]),
    "data_disks": st.dictionaries(st.sampled_from(DATA_DISKS), data_disk, max_size=3),
    "cdrom_media": st.sampled_from([None, "iso-1", "iso-2"]),
    "nics": st.dictionaries(st.sampled_from(NICS), nic, max_size=2),
}


def build(fields: dict[str, Any]) -> VirtualMachineInstanceSpec:
    """The template the fields describe: a root containerDisk, a CD-ROM drive, the pod network and
    the drawn data disks and secondary NICs."""
    topology = fields["topology"] or (None, None, None)
    disks = [disk("root"), disk("cd", cdrom=True)]
    volumes = [container_disk("root")]
    if fields["cdrom_media"] is not None:
        volumes.append(pvc("cd", claim=fields["cdrom_media"], hotpluggable=True))
    for name, d in sorted(fields["data_disks"].items()):
        disks.append(disk(name, bus=d["bus"]))
        volumes.append(pvc(name, claim=f"{name}-{d['claim']}", hotpluggable=d["hotpluggable"]))
    interfaces = [interface("default", binding="masquerade")]
    networks = [network("default")]
    for name, n in sorted(fields["nics"].items()):
        interfaces.append(interface(name, binding=n["binding"], model=n["model"], state=n["state"]))
        networks.append(network(name, nad=n["nad"]))
    return vm_spec(
        sockets=topology[0],
        cores=topology[1],
        threads=topology[2],
        max_sockets=fields["max_sockets"],
        cpu_model=fields["cpu_model"],
        guest=fields["guest"],
        max_guest=fields["max_guest"],
        hostname=fields["hostname"],
        node_selector=fields["node_selector"],
        tolerations=[toleration(t) for t in fields["tolerations"]] if fields["tolerations"] else None,
        eviction_strategy=fields["eviction_strategy"],
        disks=disks,
        volumes=volumes,
        interfaces=interfaces,
        networks=networks,
    )


CLUSTER: dict[str, st.SearchStrategy[Any]] = {
    "strategy": st.sampled_from([None, "Stage", "LiveUpdate"]),
    "max_cpu_sockets": st.sampled_from([None, None, 8, 12]),
    "max_guest": st.sampled_from([None, None, "16Gi"]),
    "max_hotplug_ratio": st.sampled_from([None, 2, 8]),
    "cpu_model": st.sampled_from([None, "Haswell", "Skylake-Server"]),
    "machine_type": st.sampled_from([None, "q35"]),
    "eviction_strategy": st.sampled_from([None, "LiveMigrateIfPossible"]),
}


def edit_of(
    fields: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[tuple[dict[str, Any], dict[str, Any]]]:
    """A draw of every field, and the same with a few of them drawn again (possibly none)."""

    @st.composite
    def draw_edit(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
        before = draw(st.fixed_dictionaries(fields))
        changed = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
        after = dict(before)
        for key in changed:
            after[key] = draw(fields[key])
        return before, after

    return draw_edit()


def with_failure(status: VirtualMachineInstanceStatus, failure: str | None) -> VirtualMachineInstanceStatus:
    """``status`` reporting a failed CPU or memory hotplug, or a failed volume of that name."""
    paths = {"cpu": "domain.cpu.sockets", "memory": "domain.memory.guest"}
    if failure is None:
        return status
    path = paths.get(failure, f"volumes[name={failure}]")
    return status.model_copy(update={"hotplug_failures": [HotplugFailure(path=path, message="refused")]})


@dataclass(frozen=True)
class Case:
    """A VMI booted from ``template`` under ``boot_config``, then ``edited`` planned under ``cfg``."""

    template: VirtualMachineInstanceSpec
    edited: VirtualMachineInstanceSpec
    boot_config: KubeVirtConfiguration
    cfg: KubeVirtConfiguration
    vmi: RunningVMI
    status: VirtualMachineInstanceStatus

    def plan(self, running: VirtualMachineInstanceSpec | None = None, template: Any = None) -> Plan:
        return plan(
            running=self.vmi.spec if running is None else running,
            desired=effective_spec(self.edited if template is None else template, self.cfg),
            observed=self.status,
            config=self.cfg,
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    before, after = draw(edit_of(FIELDS))
    cluster_before, cluster_after = draw(edit_of(CLUSTER))
    failure = draw(st.sampled_from([None, None, None, "cpu", "memory", *sorted(before["data_disks"])]))
    template, boot_config = build(before), config(**cluster_before)
    vmi = boot(template, boot_config)
    return Case(
        template, build(after), boot_config, config(**cluster_after), vmi, with_failure(vmi.status, failure)
    )


# --------------------------------------------------------------------------------------- properties


@SETTINGS
@given(cases())
def test_planning_is_deterministic(case: Case) -> None:
    first = case.plan()
    again = case.plan()

    assert first == again
    assert first.restart_required == again.restart_required


@SETTINGS
@given(
    st.fixed_dictionaries(FIELDS), st.fixed_dictionaries(CLUSTER), st.sampled_from(["Stage", "LiveUpdate"])
)
def test_a_spec_planned_against_itself_is_an_empty_plan(
    fields: dict[str, Any], cluster: dict[str, Any], strategy: str
) -> None:
    """Booted from its own effective spec, a template has nothing to change, whatever the strategy."""
    template = build(fields)
    vmi = boot(template, config(**cluster))

    result = replan(vmi, template, config(**{**cluster, "strategy": strategy}))

    assert result.empty
    assert result.restart_required is None
    assert result.next_running == vmi.spec


@SETTINGS
@given(cases())
def test_applying_the_live_changes_leaves_none_to_apply(case: Case) -> None:
    first = case.plan()

    again = case.plan(running=first.next_running)

    assert again.live == ()
    if not first.pending:
        assert again.empty


@SETTINGS
@given(cases())
def test_reverting_every_pending_path_leaves_nothing_pending(case: Case) -> None:
    """Two corners are the cluster's, not the template's:

    - a cluster default that appeared after boot where the guest has no value (a CPU model, a machine
      type) cannot be reverted: an unset field takes the cluster default again; only a restart
      applies it;
    - reverting can bring a cluster default back into play (guest 512Mi → 1Gi again makes the
      cluster's maxGuest apply), which is then pending of its own; reverting that too pins it.
    """
    template, result = case.edited, case.plan()
    for _ in range(2):
        paths = [change.path for change in result.pending]
        template = revert(template, case.vmi.spec, paths, observed=case.status)
        result = case.plan(template=template)
        assert all(c.source is ChangeSource.CLUSTER for c in result.pending), result.pending

    assert all(c.running is None for c in result.pending), result.pending


@SETTINGS
@given(cases())
def test_stage_never_yields_a_live_change(case: Case) -> None:
    result = case.plan()

    if case.cfg.rollout_strategy is RolloutStrategy.STAGE:
        assert result.live == ()


@SETTINGS
@given(cases())
def test_restart_required_is_set_exactly_while_pending_and_then_nothing_goes_live(case: Case) -> None:
    result = case.plan()

    assert (result.restart_required is not None) == bool(result.pending)
    if result.restart_required is not None:
        assert result.live == ()
        assert result.restart_required.reason == result.pending[0].reason
        assert result.next_running == case.vmi.spec


@SETTINGS
@given(
    cases(),
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=16 * 2**30),
)
def test_a_live_change_never_takes_more_than_the_node_has_room_for(
    case: Case, cpu_millis: int, memory_bytes: int
) -> None:
    room = Resources(cpu_millis, memory_bytes)
    result = plan(
        running=case.vmi.spec,
        desired=effective_spec(case.edited, case.cfg),
        observed=case.status,
        config=case.cfg,
        node_room=room,
    )

    before, after = guest_request(case.vmi.spec), guest_request(result.next_running)
    assert after.cpu_millis <= max(before.cpu_millis, room.cpu_millis)
    assert after.memory_bytes <= max(before.memory_bytes, room.memory_bytes)
    refused = [p for p in result.pending if p.reason == "InsufficientNodeResources"]
    assert all(
        p.path.startswith(("spec.template.spec.domain.cpu", "spec.template.spec.domain.memory"))
        for p in refused
    )


@SETTINGS
@given(cases())
def test_a_node_with_room_to_spare_plans_as_an_unlimited_one(case: Case) -> None:
    ample = Resources(10**9, 2**62)
    limited = plan(
        running=case.vmi.spec,
        desired=effective_spec(case.edited, case.cfg),
        observed=case.status,
        config=case.cfg,
        node_room=ample,
    )

    assert limited == case.plan()
