"""A shared informer factory: one informer per resource (and selector) per client, as client-go's.

The controllers, the scheduler and the garbage collector of one process read the same VMIs; one
list+watch serves them all. ``informer`` hands out the same object for the same request; whoever uses
it starts it (starting twice is a no-op) and the owner of the factory stops them all. Its informers
keep lean copies (no ``managedFields``, as controllers built on client-go strip them, and interned
strings), and keep Events and ControllerRevisions compact: they are the most numerous objects (three
Events per VM start) and are only ever read by key.
"""

from __future__ import annotations

from vmplane.api.resources import CONTROLLER_REVISIONS, EVENTS
from vmplane.client.base import ObjectClient
from vmplane.reconcile.informer import DEFAULT_BACKOFF, Backoff, Informer, lean_copy, strip_managed_fields

__all__ = ["COMPACT_RESOURCES", "SharedInformerFactory"]

COMPACT_RESOURCES = frozenset({EVENTS, CONTROLLER_REVISIONS})


class SharedInformerFactory:
    def __init__(self, client: ObjectClient, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.client = client
        self._backoff = backoff
        self._informers: dict[tuple[str, str, str], Informer] = {}

    def informer(self, resource: str, *, label_selector: str = "", field_selector: str = "") -> Informer:
        key = (resource, label_selector, field_selector)
        found = self._informers.get(key)
        if found is None:
            compact = resource in COMPACT_RESOURCES
            # A compact cache re-encodes what it keeps: interning its strings would be lost work.
            transform = strip_managed_fields if compact else lean_copy
            found = Informer(
                self.client,
                resource,
                label_selector=label_selector,
                field_selector=field_selector,
                backoff=self._backoff,
                transform=transform,
                compact=compact,
            )
            self._informers[key] = found
        return found

    def informers(self) -> tuple[Informer, ...]:
        return tuple(self._informers.values())

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def wait_synced(self) -> None:
        for informer in self._informers.values():
            await informer.wait_synced()

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()
