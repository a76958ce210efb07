"""``agent.fencing``: an agent whose Lease goes unrenewed stops its guests, and resumes on renewal."""

from __future__ import annotations

import asyncio

from vmplane.agent.fencing import Fence, fence_in
from vmplane.testing.clock import FakeClock, run_in_virtual_time


def test_fence_in_counts_from_the_last_renewal_sent() -> None:
    clock = FakeClock()
    sent = clock()
    clock.advance(12)
    assert fence_in(sent, clock(), 30) == 18
    clock.advance(18)
    assert fence_in(sent, clock(), 30) == 0


class Guests:
    def __init__(self) -> None:
        self.stops = 0
        self.resumes = 0

    async def stop(self) -> None:
        self.stops += 1

    def resume(self) -> None:
        self.resumes += 1


async def _tick(clock: FakeClock, seconds: float) -> None:
    """Move the wall clock and let the fence loop (on virtual time) look at it."""
    clock.advance(seconds)
    await asyncio.sleep(seconds)


def test_an_agent_renewing_in_time_never_fences() -> None:
    async def main() -> Guests:
        clock, guests = FakeClock(), Guests()
        fence = Fence(timeout=30, clock=clock, stop_guests=guests.stop, resume=guests.resume)
        fence.start()
        for _ in range(10):
            await _tick(clock, 10)
            fence.renewed(clock())
        await fence.stop()
        return guests

    assert run_in_virtual_time(main()).stops == 0


def test_an_agent_that_cannot_renew_stops_its_guests_once_then_resumes_when_it_can() -> None:
    async def main() -> tuple[Guests, list[bool]]:
        clock, guests = FakeClock(), Guests()
        fence = Fence(timeout=30, clock=clock, stop_guests=guests.stop, resume=guests.resume)
        fence.start()
        states = []
        await _tick(clock, 29)
        states.append(fence.fenced)
        await _tick(clock, 2)
        states.append(fence.fenced)
        await _tick(clock, 60)  # still fenced: the guests are stopped once
        fence.renewed(clock())
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
        clock, guests = FakeClock(), Guests()
        fence = Fence(timeout=30, clock=clock, stop_guests=guests.stop, resume=guests.resume)
        fence.start()
        sent = clock()
        await _tick(clock, 25)
        fence.renewed(sent)  # a slow renewal sent at 0 s: the count still starts at 0 s
        await _tick(clock, 6)
        fenced = fence.fenced
        await fence.stop()
        return fenced

    assert run_in_virtual_time(main()) is True
