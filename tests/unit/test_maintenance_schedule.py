"""``rollout.schedule``: when a MaintenanceWindow opens and closes, in its own time zone, including
the daylight-saving changes of two zones (Europe/Berlin, America/New_York) where local time jumps
(a start in the gap opens one wall-clock hour later) or repeats (a start in the fold opens once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmplane.api.maintenance import WindowSchedule
from vmplane.rollout.schedule import next_occurrence, occurrence_at
from vmplane.testing.clock import START, FakeClock

ALL_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def schedule(start: str, end: str, zone: str, days: list[str] | None = None) -> WindowSchedule:
    return WindowSchedule(days=days or ALL_DAYS, start=start, end=end, time_zone=zone)


def test_the_next_start_is_on_the_next_listed_day_in_the_zone() -> None:
    clock = FakeClock()  # Saturday 2026-11-28 10:00Z = 11:00 in Berlin
    window = schedule("02:00", "04:00", "Europe/Berlin", ["Tue"])
    occurrence = next_occurrence(window, clock())
    assert (occurrence.start, occurrence.end) == (utc(2026, 12, 1, 1, 0), utc(2026, 12, 1, 3, 0))


def test_a_window_is_open_from_its_start_until_just_before_its_end() -> None:
    window = schedule("10:00", "11:00", "UTC", ["Sat"])
    assert occurrence_at(window, START) is not None
    assert occurrence_at(window, START - timedelta(seconds=1)) is None
    assert occurrence_at(window, START + timedelta(hours=1)) is None


def test_the_open_window_is_the_next_occurrence_while_it_lasts() -> None:
    clock = FakeClock()
    window = schedule("09:00", "12:00", "UTC", ["Sat"])
    assert next_occurrence(window, clock()).start == utc(2026, 11, 28, 9, 0)
    clock.advance(3 * 3600)
    assert next_occurrence(window, clock()).start == utc(2026, 12, 5, 9, 0)


def test_an_end_before_the_start_closes_the_window_the_next_day() -> None:
    window = schedule("22:00", "02:00", "Europe/Berlin", ["Sat"])
    occurrence = next_occurrence(window, START)
    assert (occurrence.start, occurrence.end) == (utc(2026, 11, 28, 21, 0), utc(2026, 11, 29, 1, 0))
    assert occurrence_at(window, utc(2026, 11, 29, 0, 30)) == occurrence


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc_hour"),
    [
        ("Europe/Berlin", (2026, 3, 28), 2),  # CET, +01:00
        ("Europe/Berlin", (2026, 3, 30), 1),  # CEST, +02:00
        ("America/New_York", (2026, 3, 7), 8),  # EST, -05:00
        ("America/New_York", (2026, 3, 9), 7),  # EDT, -04:00
    ],
    ids=["berlin-winter", "berlin-summer", "new-york-winter", "new-york-summer"],
)
def test_a_window_keeps_its_local_time_across_a_daylight_saving_change(
    zone: str, day: tuple[int, int, int], expected_utc_hour: int
) -> None:
    window = schedule("03:00", "04:00", zone)
    start = next_occurrence(window, utc(*day, 0, 0) - timedelta(hours=6)).start
    assert start == utc(*day, expected_utc_hour, 0)


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # 02:30 does not exist on 2026-03-29 in Berlin: 03:30 CEST.
        ("Europe/Berlin", (2026, 3, 29), utc(2026, 3, 29, 1, 30)),
        # 02:30 does not exist on 2026-03-08 in New York: 03:30 EDT.
        ("America/New_York", (2026, 3, 8), utc(2026, 3, 8, 7, 30)),
    ],
    ids=["berlin", "new-york"],
)
def test_a_start_in_the_spring_forward_gap_opens_one_wall_clock_hour_later(
    zone: str, day: tuple[int, int, int], expected: datetime
) -> None:
    window = schedule("02:30", "05:00", zone)
    occurrence = next_occurrence(window, utc(*day, 0, 0) - timedelta(hours=6))
    assert occurrence.start == expected
    assert occurrence.end > occurrence.start


@pytest.mark.parametrize(
    ("zone", "day", "first", "end"),
    [
        # 02:30 happens twice on 2026-10-25 in Berlin (CEST, then CET): the first; 03:30 is CET.
        ("Europe/Berlin", (2026, 10, 25), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30)),
        # 01:30 happens twice on 2026-11-01 in New York (EDT, then EST).
        ("America/New_York", (2026, 11, 1), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30)),
    ],
    ids=["berlin", "new-york"],
)
def test_a_start_in_the_autumn_fold_opens_once_at_its_first_occurrence(
    zone: str, day: tuple[int, int, int], first: datetime, end: datetime
) -> None:
    start_at = "02:30" if zone == "Europe/Berlin" else "01:30"
    end_at = "03:30" if zone == "Europe/Berlin" else "02:30"
    window = schedule(start_at, end_at, zone)
    occurrence = next_occurrence(window, utc(*day, 0, 0) - timedelta(hours=6))
    assert (occurrence.start, occurrence.end) == (first, end)
    # During the repeated hour the window is still the same single occurrence.
    assert occurrence_at(window, first + timedelta(hours=1)) == occurrence
    assert next_occurrence(window, end).start > end + timedelta(hours=12)


def test_a_weekly_window_is_found_a_full_week_ahead() -> None:
    window = schedule("10:00", "11:00", "UTC", ["Sat"])
    assert next_occurrence(window, START + timedelta(hours=1)).start == START + timedelta(days=7)
