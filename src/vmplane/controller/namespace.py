"""The namespace controller: empties a namespace being deleted, then lets it go.

Each reconcile lists what the namespace holds (one store list per namespaced resource the API
serves), asks ``namespace_lifecycle.decide`` what to do, deletes that, writes the conditions, and
removes the ``kubernetes`` finalizer once the namespace is empty. It requeues itself while content
remains: objects with finalizers (a VMI whose guest is stopping) take their time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vmplane.api.deletion import NAMESPACE_FINALIZER
from vmplane.api.resources import NAMESPACES
from vmplane.api.timestamps import timestamp
from vmplane.client.base import ObjectClient
from vmplane.controller.namespace_lifecycle import decide, with_failures
from vmplane.reconcile.informer import Informer, Key
from vmplane.reconcile.loop import Result
from vmplane.store.base import JsonObject, NotFoundError, StoreError

__all__ = ["NamespaceReconciler"]

_RECHECK = 0.5


def _with_times(
    conditions: Sequence[Mapping[str, str]], old: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Conditions with ``lastTransitionTime`` kept from ``old`` while a condition's status holds."""
    before = {c.get("type"): c for c in old if isinstance(c, Mapping)}
    result = []
    for condition in conditions:
        previous = before.get(condition["type"])
        same = previous is not None and previous.get("status") == condition["status"]
        stamp = previous.get("lastTransitionTime", now) if same and previous is not None else now
        result.append({**condition, "lastTransitionTime": stamp})
    return result


class NamespaceReconciler:
    """Reconciles one namespace (key ``("", name)``)."""

    def __init__(
        self,
        *,
        client: ObjectClient,
        namespaces: Informer,
        resources: Sequence[str],
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._namespaces = namespaces
        self._resources = tuple(resources)
        self._clock = clock

    async def reconcile(self, key: Key) -> Result:
        """Delete the content of a terminating namespace; finalize it when empty."""
        _, name = key
        namespace = self._namespaces.get("", name)
        if namespace is None or not namespace.get("metadata", {}).get("deletionTimestamp"):
            return Result()
        contents = {resource: (await self._client.list(resource, name)).items for resource in self._resources}
        plan = decide(namespace, contents)
        failures = []
        for resource, item in plan.delete:
            try:
                await self._client.delete(resource, name, item)
            except NotFoundError:
                continue
            except StoreError as err:  # reported on the namespace, and tried again
                failures.append(f'{resource} "{item}": {err}')
        if plan.conditions:
            await self._write_conditions(name, with_failures(plan.conditions, failures))
        if plan.finalize:
            await self._finalize(name)
        return Result(requeue_after=_RECHECK if plan.waiting else None)

    async def _write_conditions(self, name: str, conditions: Sequence[Mapping[str, str]]) -> None:
        try:
            current = await self._client.get(NAMESPACES, "", name)
        except NotFoundError:
            return
        status = current.get("status") if isinstance(current.get("status"), dict) else {}
        now = timestamp(self._clock())
        written = _with_times(conditions, (status or {}).get("conditions") or (), now)
        if written != (status or {}).get("conditions"):
            new_status: JsonObject = {**(status or {}), "conditions": written}
            await self._client.update(NAMESPACES, {**current, "status": new_status}, subresource="status")

    async def _finalize(self, name: str) -> None:
        try:
            current = await self._client.get(NAMESPACES, "", name)
        except NotFoundError:
            return
        spec = dict(current.get("spec") or {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or () if f != NAMESPACE_FINALIZER]
        await self._client.update(NAMESPACES, {**current, "spec": spec}, subresource="finalize")
