"""When a maintenance window is open: schedule arithmetic in the window's time zone. Pure.

Occurrences are computed on local calendar days and converted to UTC through ``zoneinfo``, so a
window keeps its local wall-clock times across daylight-saving changes. On the two days a year
where local time is not one-to-one, the rules are those of cron and systemd timers:

- a start in the spring-forward gap (02:30 on a day clocks jump 02:00 -> 03:00) is shifted forward
  by the gap (03:30 summer time): the window still opens that day, one wall-clock hour later;
- a start in the autumn fold (02:30 on a day clocks go 03:00 -> 02:00) is its first occurrence
  (summer time), so the window opens once, not twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from vmplane.api.maintenance import DAYS, WindowSchedule, parse_clock_time, time_zone

__all__ = ["Occurrence", "local_instant", "next_occurrence", "occurrence_at"]


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One opening of a window, in UTC: open from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: datetime
    end: datetime

    def contains(self, now: datetime) -> bool:
        return self.start <= now < self.end


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``zone`` (gap: shifted forward; fold: first)."""
    # fold=0 picks the offset in force before the change: in a fold that is the first occurrence,
    # in a gap it lands past the jump by exactly the gap's length (02:30 CET is 03:30 CEST).
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _occurrence_on(schedule: WindowSchedule, day: date, zone: ZoneInfo) -> Occurrence | None:
    if DAYS[day.weekday()] not in schedule.days:
        return None
    start_at, end_at = parse_clock_time(schedule.start), parse_clock_time(schedule.end)
    assert start_at is not None, "admission checked the schedule"
    assert end_at is not None, "admission checked the schedule"
    end_day = day if end_at > start_at else day + timedelta(days=1)
    return Occurrence(local_instant(day, start_at, zone), local_instant(end_day, end_at, zone))


def _occurrences_around(schedule: WindowSchedule, now: datetime) -> list[Occurrence]:
    """Every occurrence starting from the local day before ``now`` to eight days after, in order."""
    zone = time_zone(schedule.time_zone)
    today = now.astimezone(zone).date()
    found = (_occurrence_on(schedule, today + timedelta(days=offset), zone) for offset in range(-1, 9))
    return [occurrence for occurrence in found if occurrence is not None]


def occurrence_at(schedule: WindowSchedule, now: datetime) -> Occurrence | None:
    """The occurrence open at ``now``, if any (the latest-starting one if two overlap)."""
    open_now = [o for o in _occurrences_around(schedule, now) if o.contains(now)]
    return open_now[-1] if open_now else None


def next_occurrence(schedule: WindowSchedule, now: datetime) -> Occurrence:
    """The occurrence open at ``now``, else the first to start after it (a schedule has one every week)."""
    current = occurrence_at(schedule, now)
    if current is not None:
        return current
    return next(o for o in _occurrences_around(schedule, now) if o.start > now)
