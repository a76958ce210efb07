"""``GET /ui/restart-plan``: the next maintenance window and its batches, for the fleet page.

Read-only JSON computed by the same pure planning ``vmplane restarts plan`` prints
(``rollout.window_plan``), from the store's objects as they are: the page shows exactly what the
command would say, without re-implementing the batching in the browser. The caller must be allowed
to list every object the plan is computed from (VMs, VMIs, namespaces, windows), cluster-wide: the
plan names VMs of every namespace a window selects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web

from vmplane.api.maintenance import MaintenanceWindow
from vmplane.api.resources import MAINTENANCE_WINDOWS, NAMESPACES, VIRTUAL_MACHINE_INSTANCES, VIRTUAL_MACHINES
from vmplane.apiserver import status as st
from vmplane.apiserver.authz import Attributes, User, authorize
from vmplane.apiserver.context import json_response
from vmplane.rollout.window_plan import chosen_window, vm_states, window_plan
from vmplane.store.base import Store

__all__ = ["PLAN_PATH", "plan_handler"]

PLAN_PATH = "/restart-plan"
#: (group, resource) of everything the plan reads, listed cluster-wide.
_READS = (
    ("kubevirt.io", "virtualmachines"),
    ("kubevirt.io", "virtualmachineinstances"),
    ("", "namespaces"),
    ("vmplane.io", "maintenancewindows"),
)


def _check_reads(user: User) -> None:
    for group, resource in _READS:
        if not authorize(user, Attributes(verb="list", api_group=group, resource=resource)).allowed:
            where = f"{resource}.{group}" if group else resource
            raise st.forbidden(
                f'User "{user.name}" cannot list resource "{where}" at the cluster scope: '
                "the restart plan needs to read every VM, VMI, namespace and MaintenanceWindow"
            )


def plan_handler(
    store: Store, clock: Callable[[], datetime], user_of: Callable[[web.Request], User]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler: ``{"plan": null}`` when no window exists, else the next window's plan."""

    async def handler(request: web.Request) -> web.Response:
        _check_reads(user_of(request))
        windows = [MaintenanceWindow.model_validate(w) for w in (await store.list(MAINTENANCE_WINDOWS)).items]
        now = clock()
        window = chosen_window(windows, None, now)
        if window is None:
            return json_response({"plan": None})
        states = vm_states(
            (await store.list(VIRTUAL_MACHINES)).items,
            (await store.list(VIRTUAL_MACHINE_INSTANCES)).items,
            (await store.list(NAMESPACES)).items,
        )
        return json_response({"plan": window_plan(window, states, now)})

    return handler
