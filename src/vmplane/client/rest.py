"""``RestObjectClient``: the ObjectClient over the Kubernetes REST API, with aiohttp.

One class for both doors into the API server: HTTPS with a kubeconfig's server, CA and bearer token
(``config.https_client``), and the in-process door, the same requests over a private Unix socket into
the same aiohttp application (``config.in_process_client``). Either way a request passes the server's
authentication, authorization, admission and write path; nothing here trusts the caller.

Resource keys are the Store's (``plural.group``); the group's served version comes from discovery
(``/apis``), asked once. Status codes map onto the Store's error tree so callers catch the same
``NotFoundError``/``ConflictError``/``AlreadyExistsError``/``ExpiredError`` they caught from a store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import aiohttp

from vmplane.client.base import (
    ApiStatusError,
    ForbiddenError,
    InvalidError,
    Patch,
    PatchType,
    UnavailableError,
)
from vmplane.store.base import (
    AlreadyExistsError,
    ConflictError,
    ExpiredError,
    JsonObject,
    ListResult,
    NotFoundError,
    StoreError,
    WatchEvent,
)

__all__ = ["RestObjectClient", "error_for"]

_PATCH_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
# Lines of a watch stream can carry a whole object; aiohttp's default line limit is 64 KiB.
_WATCH_LINE_LIMIT = 16 * 1024 * 1024


def error_for(code: int, status: Mapping[str, Any]) -> StoreError:
    """The Store error (or ApiStatusError) a Kubernetes ``Status`` of HTTP ``code`` stands for."""
    reason = str(status.get("reason", ""))
    message = str(status.get("message", "")) or f"HTTP {code}"
    if code == 404:
        return NotFoundError(message)
    if code == 409:
        return AlreadyExistsError(message) if reason == "AlreadyExists" else ConflictError(message)
    if code == 410:
        return ExpiredError(message)
    if code in (401, 403):
        return ForbiddenError(code, reason, message)
    if code in (400, 422):
        return InvalidError(code, reason, message)
    if code == 429 or code >= 500:
        return UnavailableError(code, reason, message)
    return ApiStatusError(code, reason, message)


def _split(resource: str) -> tuple[str, str]:
    """``plural.group`` -> (group, plural); the core group has no dot."""
    plural, _, group = resource.partition(".")
    return group, plural


class RestObjectClient:
    """An ObjectClient speaking HTTP(S) to one API server as one identity (its bearer token)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str | None,
        fallback_urls: Sequence[str] = (),
    ) -> None:
        """``session`` is owned by this client (``close`` closes it); its connector picks the door.

        ``fallback_urls``: other API servers of the same control plane. A request that cannot connect
        is sent to the next one at once (nothing reached the first, so even a create is safe to
        send again); one that fails after connecting raises ``UnavailableError`` as before, and the
        next request goes to the next server. The client stays on whichever server last answered.
        """
        self._session = session
        self._bases = [url.rstrip("/") for url in (base_url, *fallback_urls)]
        self._current = 0
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._versions: dict[str, str] | None = None
        self._versions_lock = asyncio.Lock()

    async def _group_version(self, group: str) -> str:
        if not group:
            return "v1"
        async with self._versions_lock:
            if self._versions is None:
                groups = await self._request("GET", "/apis")
                self._versions = {
                    g["name"]: g["preferredVersion"]["version"] for g in groups.get("groups", [])
                }
        version = self._versions.get(group)
        if version is None:
            raise NotFoundError(f"the server does not serve the API group {group!r}")
        return version

    async def _path(self, resource: str, namespace: str | None, name: str = "", subresource: str = "") -> str:
        group, plural = _split(resource)
        prefix = f"/apis/{group}/{await self._group_version(group)}" if group else "/api/v1"
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        if name:
            path = f"{path}/{name}"
        if subresource:
            path = f"{path}/{subresource}"
        return path

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for _ in self._bases:
            base = self._bases[self._current]
            try:
                async with self._session.request(
                    method, base + path, data=data, params=params, headers=headers
                ) as response:
                    raw = await response.read()
                    status = response.status
                break
            except aiohttp.ClientConnectorError as err:
                self._fail_over(base)
                refused: Exception = err
            except (aiohttp.ClientError, OSError) as err:
                self._fail_over(base)
                raise UnavailableError(0, "ServiceUnavailable", f"{method} {path}: {err}") from err
        else:
            raise UnavailableError(0, "ServiceUnavailable", f"{method} {path}: {refused}") from refused
        decoded = json.loads(raw) if raw.strip() else {}
        if status >= 400:
            raise error_for(status, decoded if isinstance(decoded, dict) else {})
        return decoded

    async def get(self, resource: str, namespace: str, name: str) -> JsonObject:
        result: JsonObject = await self._request("GET", await self._path(resource, namespace, name))
        return result

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        params = _selectors(label_selector, field_selector)
        body = await self._request("GET", await self._path(resource, namespace), params=params)
        return ListResult(
            items=list(body.get("items") or []),
            resource_version=int(body.get("metadata", {}).get("resourceVersion") or 0),
        )

    async def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        since: int,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": str(since),
            **_selectors(label_selector, field_selector),
        }
        path = await self._path(resource, namespace)
        base = self._bases[self._current]
        try:
            async with self._session.get(
                base + path,
                params=params,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                read_bufsize=_WATCH_LINE_LIMIT,
            ) as response:
                if response.status >= 400:
                    raise error_for(response.status, await _status_body(response))
                async for line in response.content:
                    if line.strip():
                        yield _event(json.loads(line))
        except (aiohttp.ClientError, OSError) as err:
            # The caller watches again from its last revision: on the next server.
            self._fail_over(base)
            raise UnavailableError(0, "ServiceUnavailable", f"watch {path}: {err}") from err

    def _fail_over(self, base: str) -> None:
        """Move on from ``base`` (unless a concurrent request has already moved on from it)."""
        if self._bases[self._current] == base:
            self._current = (self._current + 1) % len(self._bases)

    async def create(self, resource: str, obj: JsonObject) -> JsonObject:
        namespace = obj.get("metadata", {}).get("namespace") or None
        result: JsonObject = await self._request("POST", await self._path(resource, namespace), body=obj)
        return result

    async def update(
        self, resource: str, obj: JsonObject, *, subresource: Literal["", "status", "finalize"] = ""
    ) -> JsonObject:
        metadata = obj.get("metadata", {})
        path = await self._path(resource, metadata.get("namespace") or None, metadata["name"], subresource)
        result: JsonObject = await self._request("PUT", path, body=obj)
        return result

    async def update_status(self, resource: str, obj: JsonObject) -> JsonObject:
        return await self.update(resource, obj, subresource="status")

    async def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Patch,
        *,
        patch_type: PatchType = "merge",
        subresource: Literal["", "status"] = "",
    ) -> JsonObject:
        path = await self._path(resource, namespace, name, subresource)
        result: JsonObject = await self._request(
            "PATCH", path, body=patch, content_type=_PATCH_TYPES[patch_type]
        )
        return result

    async def delete(
        self, resource: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> JsonObject:
        body: JsonObject | None = None
        if resource_version is not None:
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": str(resource_version)},
            }
        result: JsonObject = await self._request(
            "DELETE", await self._path(resource, namespace, name), body=body
        )
        return result

    async def close(self) -> None:
        await self._session.close()


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


async def _status_body(response: aiohttp.ClientResponse) -> JsonObject:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return body if isinstance(body, dict) else {}


def _event(line: JsonObject) -> WatchEvent:
    """One watch line as a WatchEvent; an ``ERROR`` line raises the error its Status stands for."""
    kind = line.get("type")
    obj = line.get("object") or {}
    if kind == "ERROR":
        raise error_for(int(obj.get("code") or 500), obj)
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise ApiStatusError(500, "InternalError", f"unknown watch event type {kind!r}")
    rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
    return WatchEvent(type=kind, object={} if kind == "BOOKMARK" else obj, resource_version=rv)
