"""Building a RestObjectClient: from a kubeconfig (HTTPS, always TLS), or for the in-process door.

The kubeconfig is read as kubectl reads its current context: server, CA data and bearer token.
Failover: every other cluster entry of the kubeconfig whose CA data is the current cluster's is
another API server of the same control plane (API servers over one etcd share one serving CA), and
the client fails over to them in the file's order. kubectl ignores those entries.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from vmplane.client.rest import RestObjectClient

__all__ = ["Kubeconfig", "KubeconfigError", "https_client", "in_process_client", "read_kubeconfig"]


class KubeconfigError(ValueError):
    """The kubeconfig is missing, unreadable, or lacks a piece the client needs."""


@dataclass(frozen=True, slots=True)
class Kubeconfig:
    server: str
    token: str | None
    ca_pem: bytes | None
    #: Other API servers of the same control plane, tried in order when ``server`` cannot be reached.
    fallback_servers: tuple[str, ...] = ()


def read_kubeconfig(path: Path) -> Kubeconfig:
    """The current context's server, token and CA."""
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except OSError as err:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {err.strerror}") from err
    try:
        context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user: Any = next((u["user"] for u in doc.get("users", []) if u["name"] == context.get("user")), {})
        server = str(cluster["server"])
    except (KeyError, StopIteration, TypeError) as err:
        raise KubeconfigError(f"kubeconfig {path}: the current context is incomplete") from err
    if not server.startswith("https://"):
        raise KubeconfigError(f"kubeconfig {path}: the server must be https://, got {server!r}")
    ca = cluster.get("certificate-authority-data")
    fallbacks = tuple(
        str(other["cluster"]["server"])
        for other in doc["clusters"]
        if isinstance(other, dict)
        and isinstance(other.get("cluster"), dict)
        and other["cluster"] is not cluster
        and ca
        and other["cluster"].get("certificate-authority-data") == ca
        and str(other["cluster"].get("server", "")).startswith("https://")
    )
    return Kubeconfig(
        server=server,
        token=user.get("token"),
        ca_pem=base64.b64decode(ca) if ca else None,
        fallback_servers=fallbacks,
    )


def https_client(config: Kubeconfig) -> RestObjectClient:
    """A client of ``config.server`` over TLS, verifying it against the kubeconfig's CA."""
    context = ssl.create_default_context(cadata=config.ca_pem.decode() if config.ca_pem else None)
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    return RestObjectClient(
        session=aiohttp.ClientSession(connector=connector),
        base_url=config.server,
        token=config.token,
        fallback_urls=config.fallback_servers,
    )


def in_process_client(socket_path: Path, token: str) -> RestObjectClient:
    """A client of the API server of this process, through its private Unix socket."""
    connector = aiohttp.UnixConnector(path=str(socket_path), limit=0)
    return RestObjectClient(
        session=aiohttp.ClientSession(connector=connector), base_url="http://vmplane", token=token
    )
