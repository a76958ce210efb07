"""``limit``/``continue`` over a consistent snapshot.

Neither the Store nor the watch cache can read at a past revision, so the first page of a paged list
keeps its filtered snapshot here (the list of the items, which the cache never mutates), for a few
minutes (as etcd keeps history until compaction); a ``continue`` token names the snapshot and where
the next page starts. An evicted snapshot answers 410 Expired, as an
etcd-compacted continue token does. A snapshot remembers the list it was made for (its ``scope``:
resource and namespace), and its token is refused for any other, as etcd refuses a key
outside the list's prefix: a VM list's token cannot page through Nodes.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from vmplane.server import status as st

__all__ = ["Page", "SnapshotCache"]

Item = TypeVar("Item")

_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: list[Item]
    resource_version: int
    continue_token: str
    remaining: int | None


class SnapshotCache(Generic[Item]):
    """Bounded, time-limited snapshots of filtered lists, keyed by an unguessable id."""

    def __init__(
        self, *, max_snapshots: int = 32, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._snapshots: OrderedDict[str, tuple[float, int, str, list[Item]]] = OrderedDict()
        self._max = max_snapshots
        self._ttl = ttl
        self._clock = clock

    def first_page(
        self, items: list[Item], resource_version: int, limit: int, *, scope: str = ""
    ) -> Page[Item]:
        """The first ``limit`` items; the rest is kept for the token, which only ``scope`` may use."""
        if limit <= 0 or len(items) <= limit:
            return Page(items, resource_version, "", None)
        snapshot_id = secrets.token_hex(8)
        self._snapshots[snapshot_id] = (self._clock(), resource_version, scope, items)
        self._evict()
        return self._page(snapshot_id, items, resource_version, 0, limit)

    def next_page(self, token: str, limit: int, *, scope: str = "") -> Page[Item]:
        snapshot_id, start = _decode(token)
        entry = self._snapshots.get(snapshot_id)
        if entry is None or self._clock() - entry[0] > self._ttl:
            self._snapshots.pop(snapshot_id, None)
            raise st.expired(_EXPIRED)
        _, resource_version, issued_for, items = entry
        if issued_for != scope:
            raise st.bad_request(
                "continue key is not valid: it was issued for another list (resource or namespace)"
            )
        return self._page(snapshot_id, items, resource_version, start, limit if limit > 0 else len(items))

    def _page(self, snapshot_id: str, items: list[Item], rv: int, start: int, limit: int) -> Page[Item]:
        end = start + limit
        if end >= len(items):
            self._snapshots.pop(snapshot_id, None)
            return Page(items[start:], rv, "", None)
        return Page(items[start:end], rv, _encode(snapshot_id, end, rv), len(items) - end)

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, (created, *_) in self._snapshots.items() if now - created > self._ttl]:
            del self._snapshots[key]
        while len(self._snapshots) > self._max:
            self._snapshots.popitem(last=False)


def _encode(snapshot_id: str, start: int, rv: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "snap": snapshot_id, "start": start})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str) -> tuple[str, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(raw["snap"]), int(raw["start"])
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise st.bad_request(f"continue key is not valid: {err}") from err
