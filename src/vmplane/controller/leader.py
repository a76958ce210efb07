"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection``.

Several controller processes may run; the one holding the Lease acts. A candidate tries every
``retry_period`` to create the Lease or take it over; it may take it over only once the holder has
not renewed it for ``lease_duration``, measured on this process's own monotonic clock from when this
process last saw the record change (client-go's ``observedTime``), so clock skew between hosts does
not matter. The leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it
stops leading at once (all work cancelled) and ``run`` returns: the process exits and, restarted,
stands again. Writes carry the read resourceVersion, so two candidates never both win one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmplane.api.resources import LEASES
from vmplane.api.timestamps import micro_timestamp
from vmplane.client.base import ObjectClient
from vmplane.store.base import AlreadyExistsError, JsonObject, NotFoundError, StoreError

__all__ = ["LeaderConfig", "LeaderElector", "may_acquire"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """kube-controller-manager's flags, shortened: ``--leader-elect-lease-duration`` and friends."""

    identity: str
    namespace: str = "kube-system"
    name: str = "vmplane-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def may_acquire(*, holder: str, identity: str, observed_at: float, now: float, lease_duration: float) -> bool:
    """Whether ``identity`` may write itself into a Lease held by ``holder`` (pure).

    ``observed_at``: when (monotonic) this candidate last saw the Lease's record change.
    """
    return not holder or holder == identity or now >= observed_at + lease_duration


def _spec(lease: JsonObject | None) -> JsonObject:
    spec = (lease or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


class LeaderElector:
    """Stands for the Lease; ``run(lead)`` runs ``lead()`` only while this process holds it."""

    def __init__(
        self,
        client: ObjectClient,
        config: LeaderConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._config = config
        self._monotonic = monotonic
        self._wall = wall
        self._observed: JsonObject | None = None
        self._observed_at = 0.0
        self.is_leader = False

    def _lease(self, previous: JsonObject | None) -> JsonObject:
        now = micro_timestamp(self._wall())
        old = _spec(previous)
        taking_over = old.get("holderIdentity") != self._config.identity
        spec = {
            "holderIdentity": self._config.identity,
            "leaseDurationSeconds": int(self._config.lease_duration),
            "acquireTime": now if taking_over else old.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0)
            + (1 if previous and taking_over else 0),
        }
        metadata = dict((previous or {}).get("metadata") or {})
        metadata.update(name=self._config.name, namespace=self._config.namespace)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this process holds the Lease after it."""
        config = self._config
        try:
            current: JsonObject | None = await self._client.get(LEASES, config.namespace, config.name)
        except NotFoundError:
            current = None
        if current is None:
            with contextlib.suppress(AlreadyExistsError):
                created = await self._client.create(LEASES, self._lease(None))
                self._see(created)
                return True
            return False
        if _spec(current) != _spec(self._observed):
            self._see(current)
        holder = str(_spec(current).get("holderIdentity") or "")
        if not may_acquire(
            holder=holder,
            identity=config.identity,
            observed_at=self._observed_at,
            now=self._monotonic(),
            lease_duration=config.lease_duration,
        ):
            return False
        updated = await self._client.update(LEASES, self._lease(current))
        self._see(updated)
        return True

    def _see(self, lease: JsonObject) -> None:
        self._observed, self._observed_at = lease, self._monotonic()

    async def _round(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except StoreError as err:  # a conflict (another candidate won), or the API unreachable
            log.info("leader election %s: %s", self._config.identity, err)
            return False

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Acquire, run ``lead`` while renewing, and return (``lead`` cancelled) once the Lease is lost."""
        config = self._config
        while True:  # a candidate polls, as client-go's does: the Lease has no watchable expiry
            if await self._round():
                break
            await asyncio.sleep(config.retry_period)
        log.info("%s became the leader of %s/%s", config.identity, config.namespace, config.name)
        self.is_leader = True
        leading = asyncio.create_task(lead(), name="leading")
        last_renewed = self._monotonic()
        try:
            while not leading.done():
                await asyncio.wait({leading}, timeout=config.retry_period)
                if leading.done():
                    break
                if await self._round():
                    last_renewed = self._monotonic()
                elif self._monotonic() - last_renewed >= config.renew_deadline or self._lost():
                    log.error(
                        "%s lost the leadership of %s/%s", config.identity, config.namespace, config.name
                    )
                    return
            leading.result()  # lead() ended by itself: its error, if any, is the caller's
        finally:
            self.is_leader = False
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading

    def _lost(self) -> bool:
        """Another candidate is now the holder: stop at once rather than wait out the deadline."""
        holder = _spec(self._observed).get("holderIdentity")
        return bool(holder) and holder != self._config.identity
