"""``bench/control.py`` at a small fleet: it runs to the end against ``vmplane serve`` and against the
multi-process cluster, and prints every figure the fleet-scale issue asks for. Timing is the bench's
business, not this test's: its exit code (1 when a goal is missed) is not asserted, only that it did
not fail to run (2, or a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "control.py"
FIGURES = (
    "(a) creates/s with the control plane running",
    "(b) live change of all 50 VMs (sockets +1): converged",
    "(c) PATCH -> VMI status over 50 single changes",
    "(d) resident memory per 1,000 VMs",
    "(e) store writes per VM start",
    "(e) store writes per live change, all VMs at once",
    "(e) store writes per live change, one at a time",
    "(f) list 50 VMs through the API",
)


@pytest.mark.parametrize("target", ["serve", "cluster"])
def test_control_bench_runs_at_50_vms_and_prints_every_figure(target: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--vms", "50", "--changes", "50", "--target", target],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    for figure in FIGURES:
        assert figure in run.stdout, run.stdout
