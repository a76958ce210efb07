"""Live migration as a Hypervisor offers it: the values the two node agents pass between drivers.

A migration has two drivers, one per node, that never talk to each other directly: the agents carry
what one driver hands out to the other through the VMI (``status.migrationState`` and the layout
annotation). The source driver describes its machine's device ``layout`` (an opaque string only
drivers of the same kind read, and must validate: it crossed the API); the target driver boots a
machine from the running spec and that layout, waiting for the incoming state, and answers with the
``MigrationEndpoint`` it listens on; the source driver then streams memory (and copies the disks the
agent names, which the target agent has created empty beforehand) until the target runs the guest.
``MigrationProgress`` is what ``query-migrate`` (or the simulated driver) says of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "MigrationEndpoint",
    "MigrationProgress",
    "MigrationSettings",
    "MigrationStatus",
]


@dataclass(frozen=True, slots=True)
class MigrationEndpoint:
    """Where a target machine waits: ``host``:``port`` for the machine's state, ``host``:``disk_port``
    for the disks copied during the migration (None when none are)."""

    host: str
    port: int
    disk_port: int | None = None


@dataclass(frozen=True, slots=True)
class MigrationSettings:
    """The cluster's limits for one migration (``spec.configuration.migrations``).

    ``bandwidth_bytes_per_second`` 0 is unlimited; ``completion_timeout`` and ``progress_timeout``
    are seconds after which the source driver gives up and the guest stays where it is.
    """

    bandwidth_bytes_per_second: int = 0
    max_downtime_ms: int = 900
    completion_timeout: float = 150.0
    progress_timeout: float = 150.0


class MigrationStatus(str, Enum):
    """Where the source's migration is (QEMU's ``MIGRATION`` event states, folded)."""

    NONE = "none"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """A source machine's migration as its hypervisor reports it; bytes are of guest memory, and
    ``disk_*`` of the disks being copied. ``downtime_ms`` is known once it completed."""

    status: MigrationStatus
    transferred_bytes: int = 0
    remaining_bytes: int = 0
    total_bytes: int = 0
    dirty_bytes_per_second: int = 0
    disk_transferred_bytes: int = 0
    disk_total_bytes: int = 0
    downtime_ms: int | None = None
    total_time_ms: int | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.status in (MigrationStatus.COMPLETED, MigrationStatus.FAILED, MigrationStatus.CANCELLED)
