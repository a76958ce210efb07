"""Self-fencing: an agent that cannot renew its node's Lease stops its guests itself.

The node lifecycle controller gives a silent node's VMIs to other nodes only past the fencing
deadline (``controller.node_health``), counting from when *it saw* the last renewal. The agent
counts from when it *sent* its last successful renewal, which is earlier, and stops every guest
``fence_timeout`` seconds (30 s, shorter than the controller's 40 s) after it: so by the time a
replacement may start on another node, the old guest is stopped and the same disk never runs in two
guests. A fenced agent boots and changes nothing until a renewal succeeds again; it then reports
what its machines are (stopped), and the run strategies decide.

``fence_in`` is the decision, a pure function; ``Fence`` is the loop that acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_FENCE_TIMEOUT", "Fence", "fence_in"]

log = logging.getLogger(__name__)

DEFAULT_FENCE_TIMEOUT = 30.0
# How often a fenced or nearly fenced agent looks again at most (a renewal may land meanwhile).
_POLL = 1.0


def fence_in(last_renewed: float, now: float, timeout: float) -> float:
    """Seconds left before the agent must fence (zero or less: fence now); times are seconds on a
    monotonic clock."""
    return timeout - (now - last_renewed)


class Fence:
    """Calls ``stop_guests`` once the Lease has gone ``timeout`` seconds without a renewal, and
    ``resume`` when renewals come back. ``renewed(at)`` is told of each successful renewal (``at``:
    when it was sent, on ``monotonic``: elapsed time only, so a wall clock set forward fences no one)."""

    def __init__(
        self,
        *,
        timeout: float,
        monotonic: Callable[[], float] | None = None,
        stop_guests: Callable[[], Awaitable[None]],
        resume: Callable[[], None],
    ) -> None:
        self._timeout = timeout
        # The running loop's clock by default: the one ``NodeRegistration`` stamps renewals with.
        self._clock = monotonic or (lambda: asyncio.get_running_loop().time())
        self._stop_guests = stop_guests
        self._resume = resume
        self._last_renewed = 0.0  # set by start()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.fenced = False

    def renewed(self, at: float) -> None:
        """A renewal sent at ``at`` succeeded."""
        self._last_renewed = max(self._last_renewed, at)
        if self.fenced:
            log.warning("the node lease is renewed again: the agent resumes")
            self.fenced = False
            self._resume()
        self._wake.set()

    def start(self) -> None:
        """Count from now (a freshly started agent has a full timeout)."""
        self._last_renewed = self._clock()
        self._task = asyncio.create_task(self._run(), name="fence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            left = fence_in(self._last_renewed, self._clock(), self._timeout)
            if left <= 0 and not self.fenced:
                log.error(
                    "the node lease was not renewed for %.0f s: stopping every guest (fencing)", self._timeout
                )
                self.fenced = True
                await self._stop_guests()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(max(left, 0.0), _POLL) or _POLL)
