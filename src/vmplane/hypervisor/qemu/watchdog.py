"""The fence watchdog: stops this host's QEMU guests when the agent stops renewing, even if the agent
itself is gone (``kill -9``, a crash, a hang).

QEMU outlives its agent on purpose (a restarted agent adopts its guests), so the agent's own fence
(``agent.fencing``) cannot hold once the agent process is dead. The watchdog is a separate, detached
process (``vmplane fence-watchdog``) the agent starts; after each successful Lease renewal the agent
writes, into the heartbeat file, when that renewal was *sent*, on ``CLOCK_MONOTONIC`` (one clock for
every process of the host, and never set forward or back). Once that moment is ``timeout`` seconds
old the watchdog SIGKILLs every QEMU its machine records name (pid *and* start time, so a recycled
pid is never hit) and exits. So the fencing guarantee of ``controller.node_health`` holds for a
killed agent too: the guests are gone ``timeout`` (plus one poll) after the last renewal sent, before
the controller's fencing deadline.

A restarted agent replaces the watchdog (with its own timeout); the heartbeat it finds is kept, so
the count still runs from the old agent's last renewal. A heartbeat that is missing or unreadable
counts as stale: fencing errs on the side of stopping guests.

``verdict`` and ``targets`` are the decisions, pure; ``watch`` and ``FenceWatchdog`` are the shells.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vmplane.hypervisor.qemu import naming
from vmplane.hypervisor.qemu.process import proc_starttime
from vmplane.hypervisor.qemu.records import MachineRecord, read_record

__all__ = [
    "HEARTBEAT_FILE",
    "FenceWatchdog",
    "Verdict",
    "read_heartbeat",
    "targets",
    "verdict",
    "watch",
    "write_heartbeat",
]

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "fence-heartbeat"
WATCHDOG_FILE = "fence-watchdog.json"
_LOG_FILE = "fence-watchdog.log"
# The watchdog looks at most this often, so it fences at most this late.
_POLL = 0.5


@dataclass(frozen=True, slots=True)
class Verdict:
    """``fence``: stop the guests now; otherwise look again in ``recheck_after`` seconds."""

    fence: bool
    recheck_after: float


def verdict(*, heartbeat: float | None, now: float, timeout: float) -> Verdict:
    """Whether the last renewal sent (``heartbeat``, None if unknown) is ``timeout`` seconds old. A
    heartbeat later than ``now`` was written before the host rebooted (the monotonic clock restarts
    at boot): unknown."""
    if heartbeat is None or heartbeat > now or now - heartbeat >= timeout:
        return Verdict(fence=True, recheck_after=0.0)
    return Verdict(fence=False, recheck_after=min(_POLL, timeout - (now - heartbeat)))


def targets(records: Iterable[MachineRecord], starttime_of: Callable[[int], int | None]) -> list[int]:
    """The pids of the recorded QEMU processes still running: not exited, and the pid still the same
    process (its start time as recorded)."""
    return [
        r.pid for r in records if r.exit_state is None and r.pid > 0 and starttime_of(r.pid) == r.starttime
    ]


def write_heartbeat(path: Path, sent: float) -> None:
    """Record a renewal sent at ``sent`` (``time.monotonic``), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{sent!r}\n")
    os.replace(tmp, path)


def read_heartbeat(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def _records(machines_dir: Path) -> list[MachineRecord]:
    found = []
    for path in sorted(machines_dir.glob(f"*/{naming.MACHINE_RECORD}")):
        try:
            found.append(read_record(path))
        except (OSError, ValueError) as err:
            log.warning("skipping an unreadable machine record: %s", err)
    return found


def watch(
    *,
    machines_dir: Path,
    heartbeat: Path,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> list[int]:
    """Wait until the heartbeat is ``timeout`` seconds old, then SIGKILL the recorded guests; the
    pids killed."""
    while True:
        decided = verdict(heartbeat=read_heartbeat(heartbeat), now=time.monotonic(), timeout=timeout)
        if decided.fence:
            break
        sleep(decided.recheck_after)
    killed = []
    for pid in targets(_records(machines_dir), proc_starttime):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            continue  # it ended meanwhile
    log.error(
        "the node lease was not renewed for %.0f s: killed QEMU %s (fencing)", timeout, killed or "(none)"
    )
    return killed


class FenceWatchdog:
    """The agent's side: starts (or replaces) the watchdog of ``guest_root`` and feeds its heartbeat.

    The watchdog exits after fencing; ``beat`` starts a new one once renewals come back.
    """

    def __init__(self, *, guest_root: Path, machines_dir: Path, timeout: float) -> None:
        self._root = guest_root
        self._machines = machines_dir
        self._timeout = timeout
        self.heartbeat = guest_root / HEARTBEAT_FILE
        self._pid: int | None = None

    def start(self) -> None:
        """Replace a watchdog a previous agent left, keeping its heartbeat (or, on a first start or
        after a reboot, counting from now, as the agent's own fence does)."""
        self._stop_previous()
        now, found = time.monotonic(), read_heartbeat(self.heartbeat)
        if found is None or found > now:
            write_heartbeat(self.heartbeat, now)
        self._spawn()

    def beat(self, sent: float) -> None:
        """A renewal sent at ``sent`` (the event loop's clock, ``time.monotonic``) succeeded."""
        write_heartbeat(self.heartbeat, sent)
        if self._pid is not None and os.waitpid(self._pid, os.WNOHANG)[0] == self._pid:
            log.warning("the fence watchdog ended (it fenced); starting it again")
            self._spawn()

    def _spawn(self) -> None:
        argv = [sys.executable, "-m", "vmplane.cli.main", "fence-watchdog"]
        argv += ["--machines-dir", str(self._machines), "--heartbeat", str(self.heartbeat)]
        argv += ["--timeout", repr(self._timeout)]
        log_fd = os.open(self._root / _LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Its own session: it outlives the agent, and a signal to the agent's group misses it.
            # posix_spawn rather than Popen: no object that warns when it is collected while the
            # watchdog still runs, which is the point of it.
            self._pid = os.posix_spawn(
                sys.executable,
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(log_fd)
        record = {"pid": self._pid, "starttime": proc_starttime(self._pid)}
        (self._root / WATCHDOG_FILE).write_text(json.dumps(record) + "\n")

    def _stop_previous(self) -> None:
        try:
            known = json.loads((self._root / WATCHDOG_FILE).read_text())
            pid, starttime = int(known["pid"]), int(known["starttime"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if proc_starttime(pid) == starttime:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while proc_starttime(pid) == starttime and time.monotonic() < deadline:
                time.sleep(0.05)
