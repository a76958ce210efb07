"""``MaintenanceWindow`` (``vmplane.io/v1alpha1``): when and how VMs with ``Window`` approval restart.

Cluster-scoped, as a PriorityClass or a Node is: a window is fleet policy, its ``namespaceSelector``
picks namespaces (including ones created later), and its ``maxUnavailable`` bounds the whole
selection at once, which a namespaced object could not do across namespaces.

The schedule is weekly days plus a time range in an IANA time zone rather than a cron expression: a
window has an end as well as a start (cron has only starts), days and ``HH:MM`` read as an operator
writes a change calendar, and the time zone makes daylight-saving shifts explicit.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import time
from enum import Enum
from typing import Literal

from pydantic import Field

from vmplane.api.errors import CauseType, FieldCause
from vmplane.api.meta import Condition, ObjectMeta
from vmplane.api.metadata_validation import label_value_errors, qualified_name_errors
from vmplane.api.model import WireModel
from vmplane.api.scheduling import LabelSelector

__all__ = [
    "DAYS",
    "DEFAULT_GATE_TIMEOUT",
    "Batch",
    "BatchMember",
    "HealthGate",
    "MaintenanceWindow",
    "MaintenanceWindowSpec",
    "MaintenanceWindowStatus",
    "RunFailure",
    "RunPhase",
    "WindowRun",
    "WindowSchedule",
    "parse_clock_time",
    "time_zone",
    "time_zone_names",
    "window_causes",
]

#: Weekday names as ``spec.schedule.days`` spells them, Monday first (``datetime.weekday()`` order).
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_GATE_TIMEOUT = 300
_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_PERCENT = re.compile(r"^([0-9]{1,3})%$")


@functools.cache
def time_zone_names() -> frozenset[str]:
    """The IANA zone names this host knows (system zoneinfo, else the tzdata package).

    A name is looked up in this set before ``ZoneInfo`` opens a file for it: a zone name is a path
    under TZPATH, and a request string must never choose a file ("Europe" is a directory, "zone.tab"
    is not a zone, "../x" escapes).
    """
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone of a name admission accepted (``KeyError`` for any other)."""
    if name not in time_zone_names():
        raise KeyError(name)
    return zoneinfo.ZoneInfo(name)


def parse_clock_time(text: str) -> time | None:
    """``HH:MM`` (24-hour) as a time, None when it is not one."""
    match = _CLOCK_TIME.match(text)
    return time(int(match.group(1)), int(match.group(2))) if match else None


class WindowSchedule(WireModel):
    """Weekly days and a local time range; an ``end`` at or before ``start`` ends the next day."""

    days: list[str]
    start: str
    end: str
    time_zone: str = "UTC"


class HealthGate(WireModel):
    """How long each restarted VM has to become Ready before the window halts."""

    timeout_seconds: int = DEFAULT_GATE_TIMEOUT


class MaintenanceWindowSpec(WireModel):
    """What a window restarts (``selector``, ``namespaceSelector``), when, and how many at a time."""

    schedule: WindowSchedule
    selector: LabelSelector = Field(default_factory=LabelSelector)
    namespace_selector: LabelSelector | None = None
    max_unavailable: int | str = 1
    priority_label: str | None = None
    health_gate: HealthGate = Field(default_factory=HealthGate)


class RunPhase(str, Enum):
    """Where a window's current (or last) run is."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    HALTED = "Halted"
    #: The window ended with VMs still to restart; they wait for the next one.
    CLOSED = "Closed"


class BatchMember(WireModel):
    """A VM restarted in the current batch, and the VMI it had (the gate waits for a new one)."""

    namespace: str
    name: str
    vmi_uid: str | None = Field(default=None, alias="vmiUID")


class Batch(WireModel):
    """The batch whose health gate is being waited for."""

    index: int
    started: str
    vms: list[BatchMember]


class RunFailure(WireModel):
    """A VM that failed the health gate: which, and why."""

    namespace: str
    name: str
    reason: str
    message: str


class WindowRun(WireModel):
    """One opening of the window: kept in status so a restarted control plane resumes it."""

    window_start: str
    window_end: str
    started: str
    phase: RunPhase = RunPhase.RUNNING
    batches_done: int = 0
    restarted: list[str] = Field(default_factory=list)
    current: Batch | None = None
    failures: list[RunFailure] = Field(default_factory=list)
    finished: str | None = None


class MaintenanceWindowStatus(WireModel):
    """The next opening, the current or last run, and conditions (``Halted`` names the failed VM)."""

    next_start: str | None = None
    run: WindowRun | None = None
    conditions: list[Condition] | None = None


class MaintenanceWindow(WireModel):
    """A schedule, a selection of VMs and the pace at which their pending changes are applied."""

    api_version: Literal["vmplane.io/v1alpha1"] = "vmplane.io/v1alpha1"
    kind: Literal["MaintenanceWindow"] = "MaintenanceWindow"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MaintenanceWindowSpec
    status: MaintenanceWindowStatus | None = None


def _selector_causes(selector: LabelSelector | None, field: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    if selector is None:
        return causes
    for key, value in (selector.match_labels or {}).items():
        causes += [FieldCause(f"{field}.matchLabels", m) for m in qualified_name_errors(key)]
        causes += [FieldCause(f"{field}.matchLabels", m) for m in label_value_errors(value)]
    for i, requirement in enumerate(selector.match_expressions or []):
        where = f"{field}.matchExpressions[{i}]"
        causes += [FieldCause(f"{where}.key", m) for m in qualified_name_errors(requirement.key)]
        values = requirement.values or []
        if requirement.operator in ("In", "NotIn") and not values:
            causes.append(
                FieldCause(
                    f"{where}.values",
                    "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    CauseType.FIELD_VALUE_REQUIRED,
                )
            )
        if requirement.operator in ("Exists", "DoesNotExist") and values:
            causes.append(
                FieldCause(
                    f"{where}.values",
                    "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    CauseType.FIELD_VALUE_FORBIDDEN,
                )
            )
        for value in values:
            causes += [FieldCause(f"{where}.values", m) for m in label_value_errors(value)]
    return causes


def _schedule_causes(schedule: WindowSchedule) -> list[FieldCause]:
    causes: list[FieldCause] = []
    field = "spec.schedule"
    if not schedule.days:
        causes.append(
            FieldCause(f"{field}.days", "Required value: at least one day", CauseType.FIELD_VALUE_REQUIRED)
        )
    for i, day in enumerate(schedule.days):
        if day not in DAYS:
            causes.append(
                FieldCause(
                    f"{field}.days[{i}]",
                    f'Unsupported value: "{day}": supported values: {", ".join(DAYS)}',
                    CauseType.FIELD_VALUE_NOT_SUPPORTED,
                )
            )
    for name in ("start", "end"):
        value = getattr(schedule, name)
        if parse_clock_time(value) is None:
            causes.append(
                FieldCause(f"{field}.{name}", f'Invalid value: "{value}": must be HH:MM (00:00-23:59)')
            )
    if schedule.start == schedule.end:
        causes.append(FieldCause(f"{field}.end", "Invalid value: must differ from start"))
    if schedule.time_zone not in time_zone_names():
        causes.append(
            FieldCause(f"{field}.timeZone", f'Invalid value: "{schedule.time_zone}": unknown IANA time zone')
        )
    return causes


def _max_unavailable_causes(value: int | str) -> list[FieldCause]:
    field = "spec.maxUnavailable"
    if isinstance(value, int):
        return [] if value >= 1 else [FieldCause(field, f"Invalid value: {value}: must be at least 1")]
    match = _PERCENT.match(value)
    if match is None:
        return [FieldCause(field, f'Invalid value: "{value}": must be an integer or a percentage ("25%")')]
    percent = int(match.group(1))
    if not 1 <= percent <= 100:
        return [FieldCause(field, f'Invalid value: "{value}": must be between 1% and 100%')]
    return []


def window_causes(window: MaintenanceWindow) -> list[FieldCause]:
    """Admission: every invalid field of a window."""
    spec = window.spec
    causes = _schedule_causes(spec.schedule)
    causes += _selector_causes(spec.selector, "spec.selector")
    causes += _selector_causes(spec.namespace_selector, "spec.namespaceSelector")
    causes += _max_unavailable_causes(spec.max_unavailable)
    if spec.priority_label is not None:
        causes += [FieldCause("spec.priorityLabel", m) for m in qualified_name_errors(spec.priority_label)]
    if spec.health_gate.timeout_seconds < 1:
        causes.append(FieldCause("spec.healthGate.timeoutSeconds", "Invalid value: must be at least 1"))
    return causes
