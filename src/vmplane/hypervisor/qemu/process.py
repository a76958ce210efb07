"""QEMU processes: spawning them so they outlive the agent, and noticing when they exit.

A QEMU is spawned in its own session (``setsid``) with stdin/stdout on ``/dev/null`` and stderr in the
run directory, so neither a signal to the agent's process group nor the agent's death reaches it.
Exits are watched through a pidfd, which works for children and for adopted processes alike, wakes
the event loop the moment the process is gone and cannot be fooled by a recycled pid. A process is
identified by its pid *and* its start time (``/proc/<pid>/stat`` field 22), recorded at spawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ProcessWatch", "proc_starttime", "spawn", "stderr_tail"]


def spawn(argv: Sequence[str], *, stderr_path: Path) -> int:
    """Start ``argv`` in a new session and return its pid."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        return os.posix_spawnp(
            argv[0],
            list(argv),
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(devnull)
        os.close(err)


def proc_starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the rest follows the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def stderr_tail(path: Path, *, limit: int = 400) -> str:
    """The last lines QEMU wrote to stderr (for crash reasons), at most ``limit`` characters."""
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-3:])


class ProcessWatch:
    """Resolves ``exited`` with the ``waitpid`` status (None if not our child) when the process ends."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int | None] = self._loop.create_future()
        self._pidfd: int | None = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._on_readable)

    def _on_readable(self) -> None:
        self._release()
        status: int | None
        try:
            _, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            status = None  # adopted: its parent is init, which reaps it
        if not self.exited.done():
            self.exited.set_result(status)

    def _release(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the process; a no-op once it has exited (the pidfd guards against pid reuse)."""
        if self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, sig)

    def close(self) -> None:
        """Stop watching without touching the process."""
        self._release()
        if not self.exited.done():
            self.exited.cancel()
