"""``vmplane migrate --wait``'s progress bar (pure rendering of the source's published figures)."""

from __future__ import annotations

import io
import json

from vmplane.api.migration import MigrationPhase
from vmplane.cli.migration_progress import Progress, ProgressBar, progress_of, render

MiB = 1 << 20


def annotation(uid: str, **figures: object) -> str:
    return json.dumps({"migrationUid": uid, **figures})


def test_the_figures_of_another_migration_are_not_shown() -> None:
    assert progress_of(annotation("old", transferredBytes=5), "new") is None


def test_malformed_figures_read_as_zero() -> None:
    progress = progress_of(annotation("m", transferredBytes=-3, totalBytes="many"), "m")
    assert progress == Progress()


def test_the_bar_shows_memory_and_disk_figures() -> None:
    progress = Progress(transferred=64 * MiB, remaining=192 * MiB, total=256 * MiB, dirty_per_second=2 * MiB)
    line = render(MigrationPhase.RUNNING, progress)
    assert line.startswith("Running         [#######-----------------------]  25%")
    assert "memory 64 MiB sent, 192 MiB remaining of 256 MiB, dirty 2 MiB/s" in line
    with_disks = Progress(transferred=0, total=100 * MiB, disk_transferred=50 * MiB, disk_total=100 * MiB)
    assert "disks 50 MiB of 100 MiB" in render(MigrationPhase.RUNNING, with_disks)


def test_a_succeeded_migration_fills_the_bar() -> None:
    assert "[" + "#" * 30 + "] 100%" in render(MigrationPhase.SUCCEEDED, None)


def test_off_a_terminal_a_line_is_printed_only_when_something_changed() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    for _ in range(3):
        bar.draw(MigrationPhase.SCHEDULING, None)
    bar.draw(MigrationPhase.RUNNING, Progress(transferred=1, total=2))
    bar.done()
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["Scheduling", "Running"]
