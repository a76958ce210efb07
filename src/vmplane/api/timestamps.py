"""Kubernetes' wire formats for times, in one place: ``Time`` (RFC 3339 to the second, as in
``creationTimestamp`` and conditions) and ``MicroTime`` (to the microsecond, as in Leases and Events).
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["MICRO_TIME_FORMAT", "TIME_FORMAT", "micro_timestamp", "parse_timestamp", "timestamp"]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MICRO_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _utc(moment: datetime) -> datetime:
    # A naive moment is taken as UTC, as the API's clocks are: never as this host's local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime) -> str:
    """``moment`` as a Kubernetes ``Time``."""
    return _utc(moment).strftime(TIME_FORMAT)


def micro_timestamp(moment: datetime) -> str:
    """``moment`` as a Kubernetes ``MicroTime``."""
    return _utc(moment).strftime(MICRO_TIME_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """A ``Time`` or ``MicroTime`` (any RFC 3339 time) as an aware UTC datetime; ValueError if it is none."""
    return _utc(datetime.fromisoformat(text))
