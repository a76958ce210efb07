"""A small synchronous client for the vmplane API, configured from a kubeconfig like kubectl.

The CLI makes a handful of calls per command, so the standard library's HTTP client is enough; the
kubeconfig is found as kubectl finds it (``--kubeconfig``, then ``$KUBECONFIG``, then
``~/.kube/config``).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ApiClient", "ApiError", "ClientConfig", "load_client_config"]


class ApiError(Exception):
    """A request failed: ``message`` is the server's Status message (or the transport error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the server is and how to authenticate."""

    server: str
    token: str | None
    ca_pem: bytes | None
    namespace: str


def load_client_config(kubeconfig: str | None, namespace: str | None) -> ClientConfig:
    """Read the current context of the kubeconfig."""
    path = Path(
        kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube/config"
    )
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ApiError(0, f"cannot read kubeconfig {path}: {err.strerror}") from err
    if not isinstance(doc, dict):
        raise ApiError(0, f"kubeconfig {path} is not a kubeconfig")
    try:
        context_name = doc["current-context"]
        context = next(c["context"] for c in doc["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user: dict[str, Any] = next(
            (u["user"] for u in doc.get("users", []) if u["name"] == context.get("user")), {}
        )
    except (KeyError, StopIteration, TypeError) as err:
        raise ApiError(0, f"kubeconfig {path}: current context is incomplete") from err
    ca = cluster.get("certificate-authority-data")
    return ClientConfig(
        server=cluster["server"].rstrip("/"),
        token=user.get("token"),
        ca_pem=base64.b64decode(ca) if ca else None,
        namespace=namespace or context.get("namespace") or "default",
    )


class ApiClient:
    """JSON requests against the API server."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self._timeout = timeout
        self._ssl = ssl.create_default_context(cadata=config.ca_pem.decode()) if config.ca_pem else None

    def vm_path(self, name: str, subresource: str = "") -> str:
        """The URL path of a VM (or one of its subresources) in the configured namespace."""
        group = "subresources.kubevirt.io" if subresource else "kubevirt.io"
        path = f"/apis/{group}/v1/namespaces/{self.config.namespace}/virtualmachines/{name}"
        return f"{path}/{subresource}" if subresource else path

    def vmi_path(self, name: str) -> str:
        """The URL path of a VMI in the configured namespace."""
        return f"/apis/kubevirt.io/v1/namespaces/{self.config.namespace}/virtualmachineinstances/{name}"

    def _open(
        self, method: str, path: str, data: bytes | None, content_type: str, timeout: float | None
    ) -> Any:
        request = urllib.request.Request(self.config.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.config.token:
            request.add_header("Authorization", f"Bearer {self.config.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout, context=self._ssl)
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, _status_message(err.read()) or f"HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(0, f"cannot reach {self.config.server}: {reason}") from err

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        """Send one request; returns the decoded JSON body (None when empty); raises ApiError."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            with self._open(method, path, data, content_type, self._timeout) as response:
                text = response.read()
        except OSError as err:
            raise ApiError(0, f"cannot read from {self.config.server}: {err}") from err
        return json.loads(text) if text.strip() else None

    def stream(self, path: str) -> Iterator[bytes]:
        """GET ``path`` and yield the body as it arrives (no read timeout: a followed log may be quiet)."""
        with self._open("GET", path, None, "", None) as response:
            try:
                while chunk := response.read1(64 * 1024):
                    yield chunk
            except OSError as err:
                raise ApiError(0, f"connection to {self.config.server} lost: {err}") from err


def _status_message(raw: bytes) -> str:
    try:
        status = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()
    return str(status.get("message", "")) if isinstance(status, dict) else ""
