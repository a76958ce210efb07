"""What every handler shares (store, watch caches, registry, settings, clock) and JSON/Table responses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from vmplane.apiserver.discovery import accept_entries
from vmplane.apiserver.registry import Registry
from vmplane.apiserver.watch_cache import WatchCaches
from vmplane.apiserver.watch_cache import encode as dumps
from vmplane.store.base import Store

__all__ = ["ApiContext", "ServerSettings", "dumps", "json_response", "query_bool", "utc_now", "wants_table"]

BODY_LIMIT = 3 * 1024 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and timings; tests shorten ``bookmark_interval``.

    ``watch_buffer_bytes``/``slow_watcher_grace``: see ``watch_outbox``.
    ``consistent_read_timeout``: how long a read waits for the watch cache to catch up with the store
    before it reads the store instead.
    """

    body_limit: int = BODY_LIMIT
    bookmark_interval: float = 60.0
    default_watch_timeout: float = 1800.0
    max_conflict_retries: int = 5
    consistent_read_timeout: float = 10.0
    # A watcher that leaves more than this unread for ``slow_watcher_grace`` seconds is closed.
    watch_buffer_bytes: int = 16 * 1024 * 1024
    slow_watcher_grace: float = 5.0


@dataclass(slots=True)
class ApiContext:
    store: Store
    registry: Registry
    settings: ServerSettings = field(default_factory=ServerSettings)
    clock: Callable[[], datetime] = utc_now
    caches: WatchCaches = field(init=False)

    def __post_init__(self) -> None:
        self.caches = WatchCaches(store=self.store, wait_timeout=self.settings.consistent_read_timeout)


def json_response(body: Any, *, status: int = 200, warnings: Iterable[str] = ()) -> web.Response:
    response = web.Response(body=dumps(body), status=status, content_type="application/json")
    for warning in warnings:
        escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


def query_bool(value: str | None) -> bool:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it (``true``, ``True``, ``1``, ...)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def wants_table(accept: str | None) -> bool:
    """True when the client's first acceptable representation is a ``meta.k8s.io/v1`` Table."""
    for media_type, params in accept_entries(accept):
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
            return media_type in ("application/json", "*/*")
        if media_type in ("application/json", "*/*", "application/*") and "as" not in params:
            return False
    return False
