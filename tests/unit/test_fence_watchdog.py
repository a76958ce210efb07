"""``hypervisor.qemu.watchdog``: when the fence watchdog stops the guests, and which processes it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmplane.hypervisor.base import MachineSpec, MachineState
from vmplane.hypervisor.qemu.records import MachineRecord
from vmplane.hypervisor.qemu.watchdog import Verdict, read_heartbeat, targets, verdict, write_heartbeat

SPEC = MachineSpec(name="ns_vm", uuid="u", sockets=1, max_sockets=1, memory_bytes=1 << 30)


def record(pid: int, starttime: int, exit_state: MachineState | None = None) -> MachineRecord:
    return MachineRecord(
        name=f"ns_vm{pid}", pid=pid, starttime=starttime, accel="tcg", spec=SPEC, exit_state=exit_state
    )


@pytest.mark.parametrize(
    ("heartbeat", "now", "expected"),
    [
        pytest.param(100.0, 101.0, Verdict(fence=False, recheck_after=0.5), id="fresh-polls"),
        pytest.param(100.0, 103.8, Verdict(fence=False, recheck_after=pytest.approx(0.2)), id="due-soon"),
        pytest.param(100.0, 104.0, Verdict(fence=True, recheck_after=0.0), id="timeout-old-fences"),
        pytest.param(100.0, 250.0, Verdict(fence=True, recheck_after=0.0), id="long-stale-fences"),
        pytest.param(None, 100.0, Verdict(fence=True, recheck_after=0.0), id="unknown-heartbeat-fences"),
        pytest.param(900.0, 100.0, Verdict(fence=True, recheck_after=0.0), id="before-a-reboot-fences"),
    ],
)
def test_the_watchdog_fences_once_the_last_renewal_is_timeout_old(
    heartbeat: float | None, now: float, expected: Verdict
) -> None:
    assert verdict(heartbeat=heartbeat, now=now, timeout=4.0) == expected


def test_the_targets_are_the_recorded_qemu_processes_still_running() -> None:
    alive = {10: 500, 11: 600}
    records = [record(10, 500), record(11, 601), record(12, 700), record(13, 800, MachineState.STOPPED)]
    # 11: the pid now belongs to another process; 12: gone; 13: recorded as exited.
    assert targets(records, alive.get) == [10]


def test_a_heartbeat_reads_back_what_was_written_and_garbage_reads_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert read_heartbeat(path) is None
    write_heartbeat(path, 1234.5678)
    assert read_heartbeat(path) == 1234.5678
    path.write_text("not a time")
    assert read_heartbeat(path) is None
