"""A resourceVersion the store has not reached yet: wait briefly, then Kubernetes' "Too large".

kube-apiserver's watch cache waits up to three seconds for a list or watch that names a
resourceVersion newer than it has seen (a client that read from another API server may be ahead of
this one), then answers ``504 Timeout: Too large resource version: N, current: M`` with the cause
``ResourceVersionTooLarge`` and ``retryAfterSeconds: 1``; the client retries. Without this a watch
from a future revision would wait in silence for events that may never come.
"""

from __future__ import annotations

import asyncio

from vmplane.apiserver import status as st
from vmplane.store.base import Store

__all__ = ["TOO_LARGE_WAIT", "too_large", "wait_for_revision"]

TOO_LARGE_WAIT = 3.0
_POLL = 0.05


def too_large(wanted: int, current: int) -> st.ApiError:
    """Kubernetes' ``NewTooLargeResourceVersionError``."""
    return st.ApiError(
        code=504,
        reason="Timeout",
        message=f"Timeout: Too large resource version: {wanted}, current: {current}",
        details={
            "causes": [{"type": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )


async def wait_for_revision(store: Store, wanted: int, *, timeout: float = TOO_LARGE_WAIT) -> None:
    """Return once the store's revision is at least ``wanted``; ``too_large`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = await store.current_revision()
    while current < wanted:
        if loop.time() >= deadline:
            raise too_large(wanted, current)
        await asyncio.sleep(_POLL)
        current = await store.current_revision()
