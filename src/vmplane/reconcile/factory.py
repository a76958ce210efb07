"""A shared informer factory: one informer per resource (and selector) per client, as client-go's.

The controllers, the scheduler and the garbage collector of one process read the same VMIs; one
list+watch serves them all. ``informer`` hands out the same object for the same request; whoever uses
it starts it (starting twice is a no-op) and the owner of the factory stops them all. Its informers
keep lean copies (no ``managedFields``, as controllers built on client-go strip them, and interned
strings), and keep Events and ControllerRevisions compact: they are the most numerous objects (three
Events per VM start) and are only ever read by key.

``selected`` serves a component that reads only some objects of a resource (the node agent: its
node's VMIs). By default that is a watch of its own with the selector, as a kubelet's; a factory made
with ``select_locally=True`` (a process that caches every object of the resource anyway) serves a
``Selection`` of the full informer instead, so each object is held and decoded once per process.
"""

from __future__ import annotations

from vmplane.api.resources import CONTROLLER_REVISIONS, EVENTS
from vmplane.client.base import ObjectClient
from vmplane.reconcile.informer import DEFAULT_BACKOFF, Backoff, Informer, lean_copy, strip_managed_fields
from vmplane.reconcile.selection import Cache, Selection

__all__ = ["COMPACT_RESOURCES", "SharedInformerFactory"]

COMPACT_RESOURCES = frozenset({EVENTS, CONTROLLER_REVISIONS})


class SharedInformerFactory:
    def __init__(
        self, client: ObjectClient, *, backoff: Backoff = DEFAULT_BACKOFF, select_locally: bool = False
    ) -> None:
        self.client = client
        self._backoff = backoff
        self._select_locally = select_locally
        self._informers: dict[tuple[str, str, str], Informer] = {}
        self._selections: dict[tuple[str, str, str], Selection] = {}

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

    def selected(self, resource: str, *, label_selector: str = "", field_selector: str = "") -> Cache:
        """The objects of ``resource`` the selectors admit: a Selection of the full informer when
        this factory selects locally, else an informer with a selected watch of its own."""
        if not self._select_locally:
            return self.informer(resource, label_selector=label_selector, field_selector=field_selector)
        key = (resource, label_selector, field_selector)
        found = self._selections.get(key)
        if found is None:
            found = Selection(
                self.informer(resource), label_selector=label_selector, field_selector=field_selector
            )
            self._selections[key] = found
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
