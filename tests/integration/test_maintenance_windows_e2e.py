"""Restart approval and MaintenanceWindows end to end through the HTTP API, on the simulated
hypervisor: pending changes applied in bounded batches inside a window, the health gate halting a
window, ``Automatic`` and ``Manual`` approval, a revert leaving the plan, and a control plane restarted
mid-window resuming it. The plane's clock is moved forward instead of waiting for the window.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, watch
from rollout_support import Cluster, condition, printable
from window_support import APPROVAL, VM, WindowPlane, Windows, window_body

from vmplane.agent.machine import machine_name

T = TypeVar("T")
DEADLINE = 60.0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WindowPlane]:
    running = WindowPlane(data_dir=tmp_path_factory.mktemp("plane"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cluster(plane: WindowPlane) -> Iterator[Cluster]:
    cluster = Cluster(plane.api())
    yield cluster
    cluster.api.close()


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """``probe()`` once it is truthy, polling with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pending_vms(cluster: Cluster, group: str, count: int, approval: str) -> dict[str, str]:
    """``count`` running VMs of ``group``, each with a pending change; their VMI uids by name."""
    names = [f"{group}-{i}" for i in range(count)]
    for i, name in enumerate(names):
        cluster.create_vm(VM.format(name=name, group=group, priority=i, approval=approval))
    uids = {}
    for name in names:
        # Ready, not only Running: a window's count of VMs down starts from every VM up.
        cluster.wait(
            "virtualmachines",
            name,
            lambda o: printable(o) == "Running" and ((o or {}).get("status") or {}).get("ready") is True,
        )
        vmi = cluster.wait("virtualmachineinstances", name, lambda o: condition(o, "Ready") is not None)
        assert vmi is not None
        uids[name] = vmi["metadata"]["uid"]
        cluster.patch_vm(name, {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 2}}}}}})
    if approval != "Automatic":  # an Automatic VM may be restarted before its pending change is seen
        for name in names:
            cluster.wait(
                "virtualmachines", name, lambda o: bool((o or {}).get("status", {}).get("pendingChanges"))
            )
    return uids


def hold_boot(plane: WindowPlane, vm: str, *, hold: bool) -> None:
    """Hold (or release) the boots of a VM's guest: while held it never becomes Ready."""
    hypervisor = plane.hypervisor
    assert hypervisor is not None
    plane.call(functools.partial(hypervisor.hold_boot, machine_name("default", vm), hold=hold))


def vmi_uid(cluster: Cluster, name: str) -> str | None:
    vmi = cluster.get("virtualmachineinstances", name)
    return None if vmi is None else str(vmi["metadata"]["uid"])


def open_window(plane: WindowPlane, windows: Windows, name: str, group: str, **spec: Any) -> dict[str, Any]:
    """Create a window for ``group`` starting two hours from the plane's now, then move the clock in."""
    start = (plane.clock() + timedelta(hours=2)).replace(second=0, microsecond=0)
    created = windows.create(window_body(name, group, start, **spec))
    plane.clock.jump(timedelta(hours=2, minutes=1))
    return created


def finished_run(windows: Windows, name: str) -> dict[str, Any]:
    """The window's run once it is no longer Running."""

    def finished() -> dict[str, Any] | None:
        run = windows.run(name)
        return run if run and run.get("phase") != "Running" else None

    return eventually(finished, f"{name} to finish")


def test_ten_pending_vms_restart_in_five_batches_with_never_more_than_two_down(
    plane: WindowPlane, cluster: Cluster
) -> None:
    windows = Windows(cluster)
    before = pending_vms(cluster, "ten", 10, "Window")
    unscheduled = cluster.wait(
        "virtualmachines", "ten-0", lambda o: condition(o, "RestartScheduled") is not None
    )
    assert condition(unscheduled, "RestartScheduled") == {
        **(condition(unscheduled, "RestartScheduled") or {}),
        "status": "False",
        "reason": "NoMaintenanceWindow",
    }
    stream = watch.Watch().stream(
        cluster.custom.list_namespaced_custom_object,
        "kubevirt.io",
        "v1",
        "default",
        "virtualmachines",
        label_selector="group=ten",
        timeout_seconds=int(DEADLINE),
    )
    start = (plane.clock() + timedelta(hours=2)).replace(second=0, microsecond=0)
    windows.create(window_body("ten", "ten", start, maxUnavailable=2))
    eventually(
        lambda: (c := condition(cluster.get("virtualmachines", "ten-9"), "RestartScheduled"))
        and c["status"] == "True"
        and start.strftime("%Y-%m-%dT%H:%M:00Z") in c["message"],
        "RestartScheduled with the window's start",
    )
    plane.clock.jump(timedelta(hours=2, minutes=1))
    ready: dict[str, bool] = dict.fromkeys(before, True)
    most_down = 0
    try:
        for event in stream:
            vm = event["object"]
            status = vm.get("status") or {}
            ready[vm["metadata"]["name"]] = bool(status.get("ready"))
            most_down = max(most_down, sum(1 for up in ready.values() if not up))
            if all(ready.values()) and (windows.run("ten").get("phase") == "Completed"):
                break
    finally:
        stream.close()
    assert most_down <= 2
    assert most_down >= 1, "no VM was ever seen down: nothing restarted"
    run = finished_run(windows, "ten")
    assert (run["phase"], run["batchesDone"], len(run["restarted"])) == ("Completed", 5, 10)
    for name, uid in before.items():
        vm = cluster.get("virtualmachines", name)
        assert vm is not None
        assert not vm["status"].get("pendingChanges"), name
        assert condition(vm, "RestartScheduled") is None
        assert vmi_uid(cluster, name) not in (None, uid)
    windows.delete("ten")


def test_a_vm_that_never_becomes_ready_halts_the_window(plane: WindowPlane, cluster: Cluster) -> None:
    windows = Windows(cluster)
    before = pending_vms(cluster, "halt", 3, "Window")
    assert plane.hypervisor is not None
    hold_boot(plane, "halt-0", hold=True)
    try:
        open_window(plane, windows, "halt", "halt", maxUnavailable=1, healthGate={"timeoutSeconds": 2})
        run = finished_run(windows, "halt")
        assert run["phase"] == "Halted"
        assert [f["name"] for f in run["failures"]] == ["halt-0"]
        halted = condition(windows.get("halt"), "Halted")
        assert halted is not None
        assert halted["status"] == "True"
        assert halted["message"].startswith("default/halt-0:")
        events = cluster.core.list_namespaced_event(
            "default", field_selector="involvedObject.name=halt"
        ).items
        assert any(e.reason == "HealthGateFailed" and "default/halt-0" in e.message for e in events)
        for name in ("halt-1", "halt-2"):
            assert vmi_uid(cluster, name) == before[name]
    finally:
        hold_boot(plane, "halt-0", hold=False)
        windows.delete("halt")


def test_automatic_approval_restarts_as_soon_as_a_change_is_pending(cluster: Cluster) -> None:
    before = pending_vms(cluster, "auto", 1, "Automatic")
    vmi = cluster.wait(
        "virtualmachineinstances",
        "auto-0",
        lambda o: o is not None and o["metadata"]["uid"] != before["auto-0"],
    )
    assert vmi is not None
    assert vmi["spec"]["domain"]["cpu"]["cores"] == 2  # the new guest runs the pending change
    cluster.wait("virtualmachines", "auto-0", lambda o: not (o or {}).get("status", {}).get("pendingChanges"))
    assert any(e.startswith("AutomaticRestart:") for e in cluster.events_about("auto-0"))


def test_manual_approval_never_restarts_even_in_a_window(plane: WindowPlane, cluster: Cluster) -> None:
    windows = Windows(cluster)
    before = pending_vms(cluster, "manual", 1, "Manual")
    open_window(plane, windows, "manual", "manual")
    run = finished_run(windows, "manual")
    assert (run["phase"], run["restarted"]) == ("Completed", [])
    vm = cluster.get("virtualmachines", "manual-0")
    assert vm is not None
    assert vm["status"]["pendingChanges"]
    assert vmi_uid(cluster, "manual-0") == before["manual-0"]
    windows.delete("manual")


def test_a_revert_before_the_window_removes_the_vm_from_the_plan(
    plane: WindowPlane, cluster: Cluster
) -> None:
    windows = Windows(cluster)
    before = pending_vms(cluster, "revert", 2, "Window")
    start = (plane.clock() + timedelta(hours=2)).replace(second=0, microsecond=0)
    windows.create(window_body("revert", "revert", start))
    cluster.wait("virtualmachines", "revert-0", lambda o: condition(o, "RestartScheduled") is not None)
    cluster.subresource("revert-0", "revert")
    cluster.wait(
        "virtualmachines",
        "revert-0",
        lambda o: condition(o, "RestartScheduled") is None and not (o or {})["status"].get("pendingChanges"),
    )
    plane.clock.jump(timedelta(hours=2, minutes=1))
    run = finished_run(windows, "revert")
    assert (run["phase"], run["restarted"]) == ("Completed", ["default/revert-1"])
    assert vmi_uid(cluster, "revert-0") == before["revert-0"]
    windows.delete("revert")


def test_an_invalid_window_is_refused_naming_the_field(cluster: Cluster, plane: WindowPlane) -> None:
    body = window_body("bad", "bad", plane.clock())
    body["spec"]["schedule"]["timeZone"] = "../../etc/passwd"
    with pytest.raises(client.ApiException) as err:
        Windows(cluster).create(body)
    assert err.value.status == 422
    assert "spec.schedule.timeZone" in err.value.body


def test_an_unknown_restart_approval_is_refused_naming_the_annotation(cluster: Cluster) -> None:
    manifest = yaml.safe_load(VM.format(name="odd", group="odd", priority=0, approval="Sometimes"))
    with pytest.raises(client.ApiException) as err:
        cluster.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", manifest
        )
    assert err.value.status == 422
    assert f"metadata.annotations[{APPROVAL}]" in err.value.body


def test_a_control_plane_restarted_mid_window_resumes_the_window(tmp_path: Any) -> None:
    plane = WindowPlane(data_dir=tmp_path)
    plane.start()
    try:
        cluster = Cluster(plane.api())
        windows = Windows(cluster)
        before = pending_vms(cluster, "resume", 3, "Window")
        assert plane.hypervisor is not None
        hold_boot(plane, "resume-0", hold=True)
        open_window(plane, windows, "resume", "resume", maxUnavailable=1, healthGate={"timeoutSeconds": 300})
        eventually(
            lambda: (windows.run("resume").get("current") or {}).get("index") == 1, "batch 1 in flight"
        )
        cluster.api.close()
        plane.stop()
        plane.start()
        cluster = Cluster(plane.api())
        windows = Windows(cluster)
        assert windows.run("resume")["current"]["index"] == 1
        assert plane.hypervisor is not None
        hold_boot(plane, "resume-0", hold=False)
        run = finished_run(windows, "resume")
        assert (run["phase"], run["batchesDone"]) == ("Completed", 3)
        assert run["restarted"] == ["default/resume-0", "default/resume-1", "default/resume-2"]
        for name, uid in before.items():
            assert vmi_uid(cluster, name) != uid
        cluster.api.close()
    finally:
        plane.stop()
