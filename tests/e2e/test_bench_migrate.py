"""``bench/migrate.py`` with one small guest and one migration each way: it runs to the end and
prints every figure. Its verdict (exit 1 when the goal is missed) is the bench's business."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.requires("qemu"), pytest.mark.timeout(400)]
BENCH = Path(__file__).resolve().parents[2] / "bench" / "migrate.py"


def test_migrate_bench_runs_and_prints_both_paths_and_their_ratio() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "256", "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    for figure in ("(a) raw QMP:", "(b) vmplane:", "vmplane / raw migration time:", "worst ratio"):
        assert figure in run.stdout, run.stdout
