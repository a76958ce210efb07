"""Where components report what happened: the protocol of ``reconcile.events.EventRecorder``.

Declared here, with the rest of the wire vocabulary, so that the controllers, the scheduler and the
node agent share one definition without importing each other.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["EventSink"]


class EventSink(Protocol):
    """Records Kubernetes Events about objects."""

    async def record(self, obj: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record one event about ``obj``."""
        ...
