"""Live migration between simulated hosts, over a real TCP connection as QEMU's is.

The simulated drivers of two node agents run in different processes, so the guest cannot be handed
over in memory: the target listens on its migration address (``prepare_incoming``) and the source
streams the guest's state to it (one JSON line: what makes it the *same* guest, its boot number
and reboots, plus its devices) after ``SimulatedHost.migration_seconds`` of simulated copying. The
target answers ``ok`` once the guest runs there; only then is the source Migrated, so a target that
dies or refuses leaves the guest running on the source, as QEMU's migration does.

The layout (what the source has plugged) crossed the API to reach the target, so it is parsed with
bounds like any hostile input before a machine is made of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmplane.hypervisor.base import HypervisorError, MachineSpec
from vmplane.hypervisor.migration import MigrationEndpoint, MigrationProgress, MigrationStatus

__all__ = [
    "GuestState",
    "Incoming",
    "Outgoing",
    "SimulatedLayout",
    "layout_of",
    "listen",
    "parse_layout",
    "stream_guest",
]

_MAX_LINE = 64 * 1024
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class SimulatedLayout(BaseModel):
    """What the source machine has now: the devices the target must boot with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sockets: int = Field(ge=1, le=4096)
    memory_bytes: int = Field(ge=1 << 20, le=1 << 44)
    disks: tuple[str, ...] = Field(default=(), max_length=256)
    nics: tuple[str, ...] = Field(default=(), max_length=256)
    links: dict[str, bool] = Field(default_factory=dict, max_length=256)


class GuestState(BaseModel):
    """What the stream carries: the guest's identity (boot and reboots) and whether it is paused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    boot: int = Field(ge=0)
    reboots: int = Field(ge=0)
    paused: bool = False


def parse_layout(text: str, spec: MachineSpec) -> SimulatedLayout:
    """The layout of ``text``, checked against the target's own ``spec`` (HypervisorError if bad)."""
    try:
        layout = SimulatedLayout.model_validate_json(text)
    except ValidationError as err:
        raise HypervisorError(
            f"{spec.name}: the migration layout is invalid: {err.errors()[0]['msg']}"
        ) from err
    for name in (*layout.disks, *layout.nics, *layout.links):
        if not _NAME.match(name):
            raise HypervisorError(f"{spec.name}: the migration layout names device {name[:64]!r}")
    known_disks = {d.name for d in spec.disks}
    known_nics = {n.name for n in spec.nics}
    if unknown := set(layout.disks) - known_disks:
        raise HypervisorError(f"{spec.name}: the layout has disks the spec lacks: {sorted(unknown)}")
    if unknown := (set(layout.nics) | set(layout.links)) - known_nics:
        raise HypervisorError(f"{spec.name}: the layout has interfaces the spec lacks: {sorted(unknown)}")
    maximum = spec.max_sockets or spec.sockets
    if layout.sockets > maximum:
        raise HypervisorError(f"{spec.name}: the layout's {layout.sockets} sockets exceed {maximum}")
    return layout


@dataclass
class Incoming:
    """A target's listening socket; ``arrived`` is set once a guest streamed in."""

    server: asyncio.Server
    accept: Callable[[GuestState], bool]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        self.server.close()


async def listen(host: str, accept: Callable[[GuestState], bool]) -> tuple[Incoming, int]:
    """Listen on ``host`` (a free port); ``accept`` takes the streamed guest or refuses it."""
    holder: list[Incoming] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=30)
            state = GuestState.model_validate_json(line[:_MAX_LINE])
            if holder and not holder[0].arrived.is_set() and holder[0].accept(state):
                holder[0].arrived.set()
                writer.write(b"ok\n")
            else:
                writer.write(b"refused\n")
            await writer.drain()
        except (OSError, TimeoutError, ValidationError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(serve, host, 0, limit=_MAX_LINE)
    except OSError as err:
        raise HypervisorError(f"cannot listen for a migration on {host}: {err}") from err
    incoming = Incoming(server=server, accept=accept)
    holder.append(incoming)
    port = server.sockets[0].getsockname()[1]
    return incoming, int(port)


async def stream_guest(target: MigrationEndpoint, state: GuestState) -> None:
    """Send the guest to ``target`` and wait for it to run there (HypervisorError if it does not)."""
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port)
    except OSError as err:
        raise HypervisorError(
            f"cannot reach the migration target {target.host}:{target.port}: {err}"
        ) from err
    try:
        writer.write(state.model_dump_json().encode() + b"\n")
        await writer.drain()
        answer = await reader.readline()
    except OSError as err:
        raise HypervisorError(f"the migration target closed the connection: {err}") from err
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if answer.strip() != b"ok":
        raise HypervisorError(
            "the migration target refused the guest" if answer else "the migration target went away"
        )


@dataclass
class Outgoing:
    """A source's migration: the task streaming it and what it came to."""

    total_bytes: int
    seconds: float
    started: float = field(default_factory=time.monotonic)
    status: MigrationStatus = MigrationStatus.ACTIVE
    error: str = ""
    task: asyncio.Task[None] | None = None
    cancelled: bool = False

    def progress(self) -> MigrationProgress:
        if self.status is MigrationStatus.ACTIVE:
            done = min((time.monotonic() - self.started) / self.seconds, 1.0) if self.seconds > 0 else 1.0
            moved = int(self.total_bytes * done)
            return MigrationProgress(
                status=self.status,
                transferred_bytes=moved,
                remaining_bytes=self.total_bytes - moved,
                total_bytes=self.total_bytes,
            )
        elapsed = int((time.monotonic() - self.started) * 1000)
        completed = self.status is MigrationStatus.COMPLETED
        return MigrationProgress(
            status=self.status,
            transferred_bytes=self.total_bytes if completed else 0,
            total_bytes=self.total_bytes,
            downtime_ms=0 if completed else None,
            total_time_ms=elapsed,
            error=self.error,
        )


def layout_of(sockets: int, memory_bytes: int, disks: Iterable[str], links: Mapping[str, bool]) -> str:
    """The layout string of a source machine with ``links`` (each NIC's link state)."""
    layout = SimulatedLayout(
        sockets=sockets,
        memory_bytes=memory_bytes,
        disks=tuple(sorted(disks)),
        nics=tuple(sorted(links)),
        links=dict(links),
    )
    return layout.model_dump_json()
