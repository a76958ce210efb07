"""``agent.fencing``: an agent whose Lease goes unrenewed stops its guests, and resumes on renewal.

The fence runs on a virtual-time loop whose ``time()`` is its monotonic clock."""

from __future__ import annotations

import asyncio

from vmplane.agent.fencing import Fence, fence_in
from vmplane.testing.clock import run_in_virtual_time


def test_fence_in_counts_from_the_last_renewal_sent() -> None:
    assert fence_in(100.0, 112.0, 30) == 18
    assert fence_in(100.0, 130.0, 30) == 0


class Guests:
    def __init__(self) -> None:
        self.stops = 0
        self.resumes = 0

    async def stop(self) -> None:
        self.stops += 1

    def resume(self) -> None:
        self.resumes += 1


def _fence(guests: Guests) -> Fence:
    loop = asyncio.get_running_loop()
    return Fence(timeout=30, monotonic=loop.time, stop_guests=guests.stop, resume=guests.resume)


def test_an_agent_renewing_in_time_never_fences() -> None:
    async def main() -> Guests:
        guests = Guests()
        fence = _fence(guests)
        now = asyncio.get_running_loop().time
        fence.start()
        for _ in range(10):
            await asyncio.sleep(10)
            fence.renewed(now())
        await fence.stop()
        return guests

    assert run_in_virtual_time(main()).stops == 0


def test_an_agent_that_cannot_renew_stops_its_guests_once_then_resumes_when_it_can() -> None:
    async def main() -> tuple[Guests, list[bool]]:
        guests = Guests()
        fence = _fence(guests)
        now = asyncio.get_running_loop().time
        fence.start()
        states = []
        await asyncio.sleep(29)
        states.append(fence.fenced)
        await asyncio.sleep(2)
        states.append(fence.fenced)
        await asyncio.sleep(60)  # still fenced: the guests are stopped once
        fence.renewed(now())
        states.append(fence.fenced)
        await fence.stop()
        return guests, states

    guests, states = run_in_virtual_time(main())
    assert states == [False, True, False]
    assert (guests.stops, guests.resumes) == (1, 1)


def test_a_renewal_sent_before_the_deadline_but_answered_after_does_not_extend_it_past_its_send_time() -> (
    None
):
    async def main() -> bool:
        guests = Guests()
        fence = _fence(guests)
        now = asyncio.get_running_loop().time
        fence.start()
        sent = now()
        await asyncio.sleep(25)
        fence.renewed(sent)  # a slow renewal sent at 0 s: the count still starts at 0 s
        await asyncio.sleep(6)
        fenced = fence.fenced
        await fence.stop()
        return fenced

    assert run_in_virtual_time(main()) is True
