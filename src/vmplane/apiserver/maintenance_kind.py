"""``MaintenanceWindow`` (``vmplane.io/v1alpha1``, cluster-scoped) as the API serves it: names, scope
and ``kubectl get`` columns (its admitter, in ``typed_kinds``, validates with ``api.maintenance``).

Who may write one is authorization's (``apiserver/authz.py``): a window restarts the VMs it selects.
"""

from __future__ import annotations

from datetime import datetime

from vmplane.apiserver.registry import Admitter, ResourceType, TableColumn
from vmplane.apiserver.tables import AGE_COLUMN, NAME_COLUMN
from vmplane.store.base import JsonObject

__all__ = ["MAINTENANCE_GROUP", "maintenance_window_type"]

MAINTENANCE_GROUP = "vmplane.io"


def _schedule(obj: JsonObject, _now: datetime) -> str:
    schedule = (obj.get("spec") or {}).get("schedule") or {}
    days = ",".join(str(d) for d in schedule.get("days") or [])
    return f"{days} {schedule.get('start', '')}-{schedule.get('end', '')} {schedule.get('timeZone', 'UTC')}"


def _spec(name: str) -> TableColumn:
    label = {"maxUnavailable": "MaxUnavailable"}[name]
    return TableColumn(name=label, cell=lambda obj, _now: str((obj.get("spec") or {}).get(name, "")))


def _next_start(obj: JsonObject, _now: datetime) -> str:
    return str((obj.get("status") or {}).get("nextStart", ""))


def _phase(obj: JsonObject, _now: datetime) -> str:
    run = (obj.get("status") or {}).get("run") or {}
    return str(run.get("phase", ""))


def _batches(obj: JsonObject, _now: datetime) -> str:
    run = (obj.get("status") or {}).get("run") or {}
    return str(run.get("batchesDone", "")) if run else ""


def maintenance_window_type(schema: JsonObject, admitter: Admitter) -> ResourceType:
    """The kind's registration, with the schema of its pydantic model and its admitter."""
    return ResourceType(
        group=MAINTENANCE_GROUP,
        version="v1alpha1",
        kind="MaintenanceWindow",
        plural="maintenancewindows",
        singular="maintenancewindow",
        namespaced=False,
        short_names=("mw",),
        schema=schema,
        columns=(
            NAME_COLUMN,
            TableColumn(name="Schedule", cell=_schedule),
            _spec("maxUnavailable"),
            TableColumn(name="Next Start", cell=_next_start),
            TableColumn(name="Phase", cell=_phase),
            TableColumn(name="Batches", cell=_batches),
            AGE_COLUMN,
        ),
        admitter=admitter,
        description="MaintenanceWindow says when VMs with Window restart approval restart to apply their "
        "pending changes, and how many at a time.",
    )
