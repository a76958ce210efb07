"""Run a reconciler over a work queue: workers, retries with exponential backoff, requeue-after.

The reconcile contract is controller-runtime's: ``reconcile(key) -> Result``; the outcome is a value
(requeue after N seconds, or done), an exception means retry with backoff, interpreted here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from vmplane.reconcile.queue import ShutDownError, WorkQueue
from vmplane.store.base import ConflictError, NotFoundError

__all__ = ["Controller", "Reconciler", "Result"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


@dataclass(frozen=True, slots=True)
class Result:
    """What to do with a key after a successful reconcile."""

    requeue_after: float | None = None


class Reconciler(Protocol[K_contra]):
    """Brings the world in line with one object; must be idempotent and read current state itself."""

    async def reconcile(self, key: K_contra) -> Result:
        """Reconcile ``key``; raise to retry with backoff."""
        ...


class Controller(Generic[K]):
    """Workers draining a queue into a reconciler, with per-key exponential backoff on failure."""

    def __init__(
        self,
        *,
        name: str,
        reconciler: Reconciler[K],
        queue: WorkQueue[K] | None = None,
        workers: int = 2,
        base_delay: float = 0.05,
        max_delay: float = 30.0,
    ) -> None:
        self.name = name
        self.queue: WorkQueue[K] = queue if queue is not None else WorkQueue()
        self._reconciler = reconciler
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the workers."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"{self.name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        """Stop the workers after their current key."""
        await self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _backoff(self, key: K) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return float(min(self._base_delay * 2 ** (failures - 1), self._max_delay))

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDownError:
                return
            try:
                result = await self._reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except (ConflictError, NotFoundError):
                # Another writer got there first (routine between controller, scheduler and agent),
                # or the object went meanwhile (a finalizer released by another controller):
                # re-read and try again, without the noise of a failure.
                log.debug("%s: %s changed meanwhile; reconciling again", self.name, key)
                self.queue.retry_after(key, self._backoff(key))
            except Exception:
                delay = self._backoff(key)
                log.exception("%s: reconcile of %s failed; retrying in %.2fs", self.name, key, delay)
                self.queue.retry_after(key, delay)
            else:
                self._failures.pop(key, None)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)
