"""Recording ``v1`` Events about objects, as ``kubectl describe`` shows them.

Identical events (same object, type, reason and message) are folded into one whose ``count`` grows,
as Kubernetes' event recorder does, so a loop that keeps observing the same thing does not flood
the store.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from vmplane.api.resources import EVENTS
from vmplane.api.timestamps import timestamp
from vmplane.client.base import ObjectClient
from vmplane.store.base import AlreadyExistsError, ConflictError, JsonObject, NotFoundError

__all__ = ["EventRecorder"]

EventType = Literal["Normal", "Warning"]


def _format(moment: datetime) -> str:
    return timestamp(moment)


class EventRecorder:
    """Writes Events for one component (``virt-controller``, ``virt-handler``...)."""

    def __init__(self, client: ObjectClient, *, component: str, clock: Callable[[], datetime]) -> None:
        self._client = client
        self._component = component
        self._clock = clock

    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record that ``reason``/``message`` happened to ``obj`` (bumping the count of a repeat)."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        involved = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": namespace,
            "uid": meta.get("uid", ""),
        }
        digest = hashlib.sha256(f"{involved['uid']}/{type}/{reason}/{message}".encode()).hexdigest()[:12]
        name = f"{involved['name']}.{digest}"
        now = _format(self._clock())
        for _ in range(3):
            try:
                existing = await self._client.get(EVENTS, namespace, name)
            except NotFoundError:
                event: JsonObject = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": involved,
                    "type": type,
                    "reason": reason,
                    "message": message,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": self._component},
                    "reportingComponent": self._component,
                }
                with contextlib.suppress(AlreadyExistsError):
                    await self._client.create(EVENTS, event)
                    return
                continue
            bumped = {**existing, "count": int(existing.get("count", 1)) + 1, "lastTimestamp": now}
            with contextlib.suppress(ConflictError, NotFoundError):
                await self._client.update(EVENTS, bumped)
                return
