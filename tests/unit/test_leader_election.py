"""Leader election over a Lease, on virtual time: who may take it, how fast, and how a leader stands down."""

from __future__ import annotations

import asyncio

import pytest

from vmplane.api.resources import LEASES
from vmplane.client.base import UnavailableError
from vmplane.controller.leader import LeaderConfig, LeaderElector, may_acquire
from vmplane.store.base import JsonObject
from vmplane.testing.clock import run_in_virtual_time
from vmplane.testing.memory_store import MemoryStore
from vmplane.testing.store_client import StoreObjectClient


@pytest.mark.parametrize(
    ("holder", "observed_at", "now", "expected"),
    [
        pytest.param("", 0.0, 0.0, True, id="nobody-holds-it"),
        pytest.param("me", 0.0, 1.0, True, id="it-is-mine"),
        pytest.param("other", 0.0, 14.9, False, id="the-holder-renewed-within-the-lease"),
        pytest.param("other", 0.0, 15.0, True, id="the-holder-has-not-renewed-for-a-lease"),
    ],
)
def test_who_may_acquire_the_lease(holder: str, observed_at: float, now: float, expected: bool) -> None:
    assert (
        may_acquire(holder=holder, identity="me", observed_at=observed_at, now=now, lease_duration=15.0)
        is expected
    )


class FlakyClient(StoreObjectClient):
    """Fails every call once ``down`` is set, as an unreachable API server does."""

    down = False

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        if self.down:
            raise UnavailableError(0, "ServiceUnavailable", "connection refused")
        return await super().get(resource, namespace, name)


def elector(client: StoreObjectClient, identity: str) -> LeaderElector:
    return LeaderElector(client, LeaderConfig(identity=identity), monotonic=asyncio.get_running_loop().time)


async def _lead_forever(started: list[str], name: str, leading: asyncio.Event) -> None:
    started.append(name)
    leading.set()
    await asyncio.Event().wait()


def test_only_one_candidate_leads_and_the_other_takes_over_a_lease_after_the_leader_dies() -> None:
    async def scenario() -> tuple[list[str], float, JsonObject]:
        loop = asyncio.get_running_loop()
        client = StoreObjectClient(MemoryStore())
        started: list[str] = []
        a_leads, b_leads = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(elector(client, "a").run(lambda: _lead_forever(started, "a", a_leads)))
        await asyncio.sleep(1)
        second = asyncio.create_task(elector(client, "b").run(lambda: _lead_forever(started, "b", b_leads)))
        await asyncio.sleep(30)
        assert started == ["a"]
        first.cancel()  # kill -9: no more renewals
        died = loop.time()
        await b_leads.wait()
        took = loop.time() - died
        second.cancel()
        lease = await client.get(LEASES, "kube-system", "vmplane-controller")
        return started, took, lease

    started, took, lease = run_in_virtual_time(scenario())
    assert started == ["a", "b"]
    assert 13.0 <= took <= 17.5  # one lease duration after the last renewal, within one retry period
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_for_the_renew_deadline_stops_all_work() -> None:
    async def scenario() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        client = FlakyClient(MemoryStore())
        work_cancelled = asyncio.Event()

        async def lead() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                work_cancelled.set()

        candidate = elector(client, "a")
        running = asyncio.create_task(candidate.run(lead))
        await asyncio.sleep(5)
        assert candidate.is_leader
        client.down = True
        cut = loop.time()
        await running
        return work_cancelled.is_set(), loop.time() - cut

    cancelled, after = run_in_virtual_time(scenario())
    assert cancelled
    # Ten seconds after the last renewal, which came at most one retry period before the cut.
    assert 8.0 <= after <= 10.5


def test_a_leader_that_finds_another_holder_stops_at_once() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        store = MemoryStore()
        client = StoreObjectClient(store)
        candidate = elector(client, "a")
        running = asyncio.create_task(candidate.run(lambda: asyncio.Event().wait()))  # type: ignore[arg-type, return-value]
        await asyncio.sleep(3)
        lease = await store.get(LEASES, "kube-system", "vmplane-controller")
        await store.update(LEASES, {**lease, "spec": {**lease["spec"], "holderIdentity": "usurper"}})
        taken = loop.time()
        await running
        return loop.time() - taken

    assert run_in_virtual_time(scenario()) <= 2.5
