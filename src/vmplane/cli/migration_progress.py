"""``vmplane migrate --wait``'s progress bar: the migration's phase and the source's byte counts.

The source agent publishes ``query-migrate``'s figures in the VMI's ``vmplane.io/migration-progress``
annotation (tagged with the migration's uid, so an earlier migration's figures are never shown). On
a terminal the bar redraws one line; elsewhere (a log, a pipe) a line is printed only when the
phase or the percentage changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TextIO

from vmplane.api.migration import MigrationPhase

__all__ = ["POLL_INTERVAL", "Progress", "ProgressBar", "progress_of", "render"]

#: How often ``--wait`` reads the migration and its VMI.
POLL_INTERVAL = 0.5
_WIDTH = 30
_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Progress:
    """Bytes of guest memory moved, left and in all; the dirty rate; the disks' bytes copied."""

    transferred: int = 0
    remaining: int = 0
    total: int = 0
    dirty_per_second: int = 0
    disk_transferred: int = 0
    disk_total: int = 0

    @property
    def percent(self) -> int:
        moved = self.transferred + self.disk_transferred
        whole = max(self.total, self.transferred + self.remaining) + self.disk_total
        return min(100, moved * 100 // whole) if whole else 0


def progress_of(annotation: str | None, migration_uid: str | None) -> Progress | None:
    """The figures of migration ``migration_uid`` in the annotation, None if it holds none of them."""
    try:
        data = json.loads(annotation) if annotation else None
    except ValueError:
        return None
    if not isinstance(data, dict) or migration_uid is None or data.get("migrationUid") != migration_uid:
        return None

    def count(key: str) -> int:
        value = data.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    return Progress(
        transferred=count("transferredBytes"),
        remaining=count("remainingBytes"),
        total=count("totalBytes"),
        dirty_per_second=count("dirtyBytesPerSecond"),
        disk_transferred=count("diskTransferredBytes"),
        disk_total=count("diskTotalBytes"),
    )


def _mib(value: int) -> str:
    return f"{value / _MIB:.0f} MiB"


def render(phase: MigrationPhase | None, progress: Progress | None) -> str:
    """One line: the phase, a bar and the figures (the bar is full once the migration succeeded)."""
    label = phase.value if phase is not None else "Pending"
    percent = progress.percent if progress is not None else 0
    if phase is MigrationPhase.SUCCEEDED:
        percent = 100
    filled = _WIDTH * percent // 100
    line = f"{label:<15} [{'#' * filled}{'-' * (_WIDTH - filled)}] {percent:3d}%"
    if progress is not None:
        line += (
            f"  memory {_mib(progress.transferred)} sent, {_mib(progress.remaining)} remaining"
            f" of {_mib(progress.total)}, dirty {_mib(progress.dirty_per_second)}/s"
        )
        if progress.disk_total:
            line += f"  disks {_mib(progress.disk_transferred)} of {_mib(progress.disk_total)}"
    return line


class ProgressBar:
    """Draws ``render``'s line on ``out``: redrawn in place on a terminal, appended elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last: tuple[MigrationPhase | None, int] | None = None
        self._drawn = False

    def draw(self, phase: MigrationPhase | None, progress: Progress | None) -> None:
        line = render(phase, progress)
        shown = (phase, progress.percent if progress is not None else 0)
        if self._tty:
            self._out.write(f"\r\x1b[2K{line}")
        elif shown != self._last:
            self._out.write(line + "\n")
        self._out.flush()
        self._last, self._drawn = shown, True

    def done(self) -> None:
        """End the bar's line (on a terminal) so what follows starts on its own."""
        if self._tty and self._drawn:
            self._out.write("\n")
            self._out.flush()
